#!/usr/bin/env python3
"""A pod save against saving its containers one by one (docs/benchmarks.md, "Pods"), in one run.

    sudo .venv/bin/python bench/pod.py [--repeat 5] [--mem 256]

A runc pod: a sandbox (sleep) and three members that join its namespaces, each running
samples/workload.c with --mem MiB of its own memory (a different --seed each: processes rarely
share pages) from the same image (one rootfs, as containers of one image have). Every variant
saves the running pod to a loopback registry with --leave-running, from a fresh $CKPT_HOME and into
a fresh repository each time (nothing is already there, nothing is mounted from elsewhere), the
variants interleaved so machine noise hits all alike:

  pod          `ckpt save --pod`: one pod checkpoint, member k packed and uploaded while k+1 dumps
  pod-serial   the same, packing each member only after its dump (the overlap switched off)
  singles      `ckpt save` of each of the three members, one after the other (three checkpoints;
               they are not frozen together)

Bytes: what each variant stores (every blob once per checkpoint: the singles store the rootfs three
times). Time: medians, and the ratio to the singles.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from support.registry_server import RegistryServer  # noqa: E402

from checkpointer.criu.options import CriuOptions  # noqa: E402
from checkpointer.porcelain import save as single  # noqa: E402
from checkpointer.porcelain.engines.base import DumpOptions  # noqa: E402
from checkpointer.porcelain.home import Home  # noqa: E402
from checkpointer.porcelain.places import RegistryOptions  # noqa: E402
from checkpointer.porcelain.pod.save import PodSaveRequest, save_pod  # noqa: E402

MEMBERS = ("a", "b", "c")
OPTIONS = DumpOptions(criu=CriuOptions(leave_running=True))
REGISTRY = RegistryOptions(insecure=True)


def runc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runc", "--root", str(root), *args], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL)


def start_pod(work: Path, root: Path, pod: str, mem: int) -> None:
    template = work / "template"
    subprocess.run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(template), "--mem", str(mem)],
                   check=True, stdout=subprocess.DEVNULL)
    sandbox_pid = 0
    for i, member in enumerate(("sandbox", *MEMBERS)):
        bundle = work / member
        shutil.copytree(template, bundle, symlinks=True)
        spec = json.loads((bundle / "config.json").read_text())
        if member == "sandbox":
            spec["process"]["args"] = ["/bin/sleep", "1000000"]
            spec["annotations"] = {"dev.ckpt.pod.name": pod}
        else:
            # The state file on the container's /dev/shm: the rootfs stays the image's, the same in all.
            spec["process"]["args"] = ["/bin/workload", "--mem", str(mem), "--state", "/dev/shm/state",
                                       "--interval-ms", "100", "--seed", str(i)]
            spec.pop("hostname", None)
            keep = [ns for ns in spec["linux"]["namespaces"] if ns["type"] not in ("network", "ipc", "uts")]
            spec["linux"]["namespaces"] = keep + [{"type": t, "path": f"/proc/{sandbox_pid}/ns/{f}"}
                                                  for t, f in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]
        (bundle / "config.json").write_text(json.dumps(spec))
        subprocess.run(["runc", "--root", str(root), "run", "-d", "--bundle", str(bundle), f"{pod}-{member}"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if member == "sandbox":
            sandbox_pid = json.loads(runc(root, "state", f"{pod}-sandbox").stdout)["pid"]
    time.sleep(2 + mem / 256)  # every page written once


def fresh_home(work: Path, n: int) -> Home:
    path = work / f"home-{n}"
    path.mkdir(mode=0o700)
    return Home(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mem", type=int, default=256, help="MiB of memory in each member")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ckpt-bench-pod-"))  # 0700
    root = work / "runc-root"
    root.mkdir()
    pod = f"bench-pod-{work.name[-6:].lower().replace('_', '')}"
    times: dict[str, list[float]] = {"pod": [], "pod-serial": [], "singles": []}
    sizes: dict[str, int] = {}
    shared = 0
    count = 0
    try:
        start_pod(work, root, pod, opts.mem)
        with RegistryServer(work / "registry", auth="none") as reg:
            for round_ in range(opts.repeat):
                order = ["pod", "pod-serial", "singles"]
                order = order[round_ % 3:] + order[:round_ % 3]
                for variant in order:
                    count += 1
                    home = fresh_home(work, count)
                    repo = f"{reg.host}/bench/r{count}"
                    started = time.perf_counter()
                    if variant == "singles":
                        total = 0
                        for member in MEMBERS:
                            result = single.save(single.SaveRequest(
                                target=single.Target(container=f"{pod}-{member}"), dest=f"{repo}-{member}:v1",
                                runc_root=root, dump=OPTIONS), home=home, registry=REGISTRY)
                            total += result.size
                        sizes["singles"] = total
                    else:
                        pod_result = save_pod(PodSaveRequest(pod=pod, dest=f"{repo}:v1", runc_root=root, dump=OPTIONS,
                                                             overlap=variant == "pod"), home=home, registry=REGISTRY)
                        sizes[variant], shared = pod_result.size, pod_result.shared
                    times[variant].append(time.perf_counter() - started)
                    shutil.rmtree(home.root)
                    print(f"round {round_ + 1} {variant:<10} {times[variant][-1]:6.2f} s", flush=True)
    finally:
        for name in (f"{pod}-{m}" for m in (*MEMBERS, "sandbox")):
            subprocess.run(["runc", "--root", str(root), "delete", "--force", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    singles = statistics.median(times["singles"])
    # Each round's variants ran back to back: their ratio within a round drifts less with the load.
    paired = {k: round(statistics.median(a / b for a, b in zip(v, times["singles"], strict=True)), 3)
              for k, v in times.items()}
    report = {"mem_mib_per_member": opts.mem, "members": len(MEMBERS), "repeat": opts.repeat,
              "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
              "ratio_to_singles": {k: round(statistics.median(v) / singles, 3) for k, v in times.items()},
              "median_of_paired_ratios": paired, "all_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
              "stored_bytes": sizes, "shared_bytes_in_pod": shared,
              "bytes_saved_by_sharing": sizes.get("singles", 0) - sizes.get("pod", 0)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
