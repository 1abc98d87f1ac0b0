#!/usr/bin/env python3
"""Migration benchmark: ckpt, Podman and the bare tools side by side, on one machine, in one run.

    sudo .venv/bin/python bench/migrate.py [--sizes 512,2048] [--repeat 3] [--scaling 512,1024,2048,4096]
                                           [--no-podman] [--json OUT]

For each memory size and repetition (interleaved, so machine noise hits all three alike) it
starts the sample workload (samples/workload.c: 1/4 random, 1/4 text, 1/2 zero pages, a fresh
random seed every time so nothing can be deduplicated against an earlier run), migrates it
through a docker-registry on 127.0.0.1, and checks that it carried on (same nonce, counter
went on). It reports medians per stage and the ratios the project's targets are stated in:

  ckpt      `ckpt save C REGISTRY/REPO:TAG` on the source, `ckpt restore REGISTRY/REPO:TAG` on
            the "target" (a separate, empty CKPT_HOME: nothing of the source is reused)
  podman    `podman container checkpoint --create-image`, `podman push`, (rm container and
            checkpoint image), `podman pull`, `podman container restore`
  floor     runc checkpoint to tmpfs, tar | zstd -1 -T0, one PUT, one GET, unzstd | untar,
            runc restore: the work itself with no tool around it

Downtime is what the workload itself saw: the longest gap between two of its ticks, read once
it has ticked on the target (past the last tick the checkpoint holds).
Bytes pushed is how much the registry's storage grew. Podman's base image (the workload's
rootfs, which a Podman checkpoint does not carry) is pushed once, untimed, and reported beside. Repeat checkpoints: a second save after
the workload rewrote 5% of its memory (SIGUSR1), bytes pushed relative to the first; and the
bytes a target that restored the first pulls for the second. Peak RSS is ckpt's own (VmHWM of
the ckpt process, polled), not CRIU's or runc's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from support.registry_server import RegistryServer  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
PODMAN_RUN = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024"]
BASE_IMAGE = "localhost/ckpt-bench:latest"
INTERVAL_MS = 100


# -- small helpers ---------------------------------------------------------------------------

def run(cmd: list[str], *, env: dict | None = None, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=capture, text=True,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - start


def timed_with_peak_rss(cmd: list[str], env: dict) -> tuple[float, int]:
    """Run `cmd`, returning (seconds, peak resident KiB of that process alone)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            stop.wait(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    stop.set()
    poller.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} failed ({proc.returncode}): {err[-3000:]}")
    return time.perf_counter() - start, peak


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def state_of(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def wait_state(read, predicate, timeout: float = 60.0) -> dict[str, str]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = state_of(read())
            if predicate(last):
                return last
        except (OSError, ValueError, KeyError, RuntimeError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"workload never reached the expected state; last: {last}")


def workload_args(mem: int, seed: int) -> list[str]:
    return ["/bin/workload", "--mem", str(mem), "--state", "/state", "--interval-ms", str(INTERVAL_MS),
            "--verify-every", "1000000000", "--seed", str(seed)]


# -- set-up ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, registry: RegistryServer) -> None:
        self.work = work
        self.reg = registry
        self.template = work / "template"
        self.runc_root = work / "runc-root"
        self.runc_root.mkdir()
        run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(self.template)])
        self.registry_blobs = Path(registry.workdir) / "data" / "docker" / "registry" / "v2" / "blobs"

    def registry_size(self) -> int:
        return dir_bytes(self.registry_blobs)

    def bundle(self, name: str, mem: int, seed: int) -> Path:
        bundle = self.work / f"bundle-{name}"
        shutil.copytree(self.template, bundle, symlinks=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = workload_args(mem, seed)
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def start_runc(self, name: str, mem: int, seed: int) -> tuple[Path, dict]:
        bundle = self.bundle(name, mem, seed)
        run(["runc", "--root", str(self.runc_root), "run", "--detach", "--bundle", str(bundle), name])
        state = wait_state(lambda: (bundle / "rootfs" / "state").read_text(), lambda s: int(s["counter"]) >= 3)
        return bundle, state

    def remove_runc(self, name: str) -> None:
        run(["runc", "--root", str(self.runc_root), "delete", "--force", name], check=False)

    # -- ckpt -----------------------------------------------------------------------------------

    def ckpt(self, home: Path, *args: str) -> tuple[float, int]:
        return timed_with_peak_rss([PY, "-m", "checkpointer", *args], {"CKPT_HOME": str(home)})

    def migrate_ckpt(self, mem: int, seed: int, tag: str) -> dict:
        name = f"bench-ckpt-{tag}"
        bundle, before = self.start_runc(name, mem, seed)
        ref = f"{self.reg.host}/bench/ckpt-{tag}:v1"
        src_home, dst_home = self.work / f"home-src-{tag}", self.work / f"home-dst-{tag}"
        grown = self.registry_size()
        t_save, rss_save = self.ckpt(src_home, "save", "--runc-root", str(self.runc_root), name, ref)
        pushed = self.registry_size() - grown
        frozen = state_of((bundle / "rootfs" / "state").read_text())  # its last tick before the dump
        shutil.rmtree(bundle)
        shutil.rmtree(src_home)
        t_restore, rss_restore = self.ckpt(dst_home, "restore", "--runc-root", str(self.runc_root), ref)
        rootfs = dst_home / "containers" / name / "rootfs"
        after = wait_state(lambda: (rootfs / "state").read_text(),
                           lambda s: int(s["counter"]) > int(frozen["counter"]) + 2)
        assert after["nonce"] == before["nonce"], "ckpt: a new process started instead of the old one"
        self.remove_runc(name)
        shutil.rmtree(dst_home)
        return {"save": t_save, "restore": t_restore, "total": t_save + t_restore,
                "downtime": (int(after["max_gap_ms"]) - INTERVAL_MS) / 1000, "pushed": pushed,
                "peak_rss_save_kib": rss_save, "peak_rss_restore_kib": rss_restore}

    def repeat_ckpt(self, mem: int, seed: int, tag: str) -> dict:
        """Second checkpoint after 5% of memory changed: bytes pushed and pulled again."""
        name = f"bench-inc-{tag}"
        bundle, _ = self.start_runc(name, mem, seed)
        home, target = self.work / f"home-inc-{tag}", self.work / f"home-inc-target-{tag}"
        refs = [f"{self.reg.host}/bench/inc-{tag}:v{i}" for i in (1, 2)]
        sizes = [self.registry_size()]
        self.ckpt(home, "save", "--leave-running", "--runc-root", str(self.runc_root), name, refs[0])
        sizes.append(self.registry_size())
        self.ckpt(target, "pull", refs[0], "inc:v1")
        pulled_first = dir_bytes(target / "store")
        run(["runc", "--root", str(self.runc_root), "kill", name, "USR1"])
        time.sleep(0.2 + mem / 2048)  # the workload rewrites 5% of its memory at its next tick
        t_second, _ = self.ckpt(home, "save", "--leave-running", "--runc-root", str(self.runc_root), name, refs[1])
        sizes.append(self.registry_size())
        self.ckpt(target, "pull", refs[1], "inc:v2")
        pulled_second = dir_bytes(target / "store") - pulled_first
        self.remove_runc(name)
        shutil.rmtree(bundle)
        shutil.rmtree(home)
        shutil.rmtree(target)
        first, second = sizes[1] - sizes[0], sizes[2] - sizes[1]
        return {"first_pushed": first, "second_pushed": second, "push_ratio": second / first,
                "first_pulled": pulled_first, "second_pulled": pulled_second,
                "pull_ratio": pulled_second / pulled_first, "second_save": t_second}

    # -- podman ---------------------------------------------------------------------------------

    def podman_ready(self) -> int:
        """Import the workload's rootfs as Podman's base image; returns the bytes it takes in the
        registry. A Podman checkpoint holds only the container's changes to its base image, which
        a target on another host must fetch as well: a runc checkpoint carries its whole rootfs."""
        run(["podman", "rmi", "--force", BASE_IMAGE], check=False)
        tar = self.work / "rootfs.tar"
        run(["tar", "-C", str(self.template / "rootfs"), "-cf", str(tar), "."])
        run(["podman", "import", str(tar), BASE_IMAGE])
        grown = self.registry_size()
        run(["podman", "push", "--tls-verify=false", BASE_IMAGE, f"docker://{self.reg.host}/bench/podman-base:v1"])
        return self.registry_size() - grown

    def migrate_podman(self, mem: int, seed: int, tag: str) -> dict:
        name = f"bench-podman-{tag}"
        image = f"localhost/bench-checkpoint-{tag}:v1"
        remote = f"{self.reg.host}/bench/podman-{tag}:v1"
        run(["podman", "run", "--detach", "--name", name, *PODMAN_RUN, BASE_IMAGE, *workload_args(mem, seed)])
        read = lambda: run(["podman", "exec", name, "cat", "/state"]).stdout  # noqa: E731
        before = wait_state(read, lambda s: int(s["counter"]) >= 3)
        grown = self.registry_size()
        t_ckpt = timed(["podman", "container", "checkpoint", "--create-image", image, name])
        copied = self.work / f"state-{tag}"
        run(["podman", "cp", f"{name}:/state", str(copied)])
        frozen = state_of(copied.read_text())  # its last tick before the dump
        t_push = timed(["podman", "push", "--tls-verify=false", image, f"docker://{remote}"])
        pushed = self.registry_size() - grown
        run(["podman", "rm", "--force", name])
        run(["podman", "rmi", "--force", image])
        t_pull = timed(["podman", "pull", "--tls-verify=false", f"docker://{remote}"])
        t_restore = timed(["podman", "container", "restore", remote])
        after = wait_state(read, lambda s: int(s["counter"]) > int(frozen["counter"]) + 2)
        assert after["nonce"] == before["nonce"], "podman: a new process started instead of the old one"
        run(["podman", "rm", "--force", name], check=False)
        run(["podman", "rmi", "--force", remote], check=False)
        return {"checkpoint": t_ckpt, "push": t_push, "pull": t_pull, "restore": t_restore,
                "total": t_ckpt + t_push + t_pull + t_restore,
                "downtime": (int(after["max_gap_ms"]) - INTERVAL_MS) / 1000, "pushed": pushed}

    # -- the floor: bare tools ------------------------------------------------------------------

    def migrate_floor(self, mem: int, seed: int, tag: str) -> dict:
        import hashlib

        import requests

        name = f"bench-floor-{tag}"
        bundle, before = self.start_runc(name, mem, seed)
        scratch = Path(tempfile.mkdtemp(prefix="ckpt-floor-", dir="/dev/shm"))
        try:
            images, blob = scratch / "img", scratch / "img.tar.zst"
            t_dump = timed(["runc", "--root", str(self.runc_root), "checkpoint", "--image-path", str(images),
                            "--work-path", str(scratch / "wk"), name])
            frozen = state_of((bundle / "rootfs" / "state").read_text())
            t_zstd = timed(["sh", "-c", f"tar -C {images} -cf - . | zstd -1 -T0 -q -o {blob}"])
            base = f"http://{self.reg.host}/v2/bench/floor-{tag}/blobs"
            start = time.perf_counter()
            digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
            location = requests.post(f"{base}/uploads/", timeout=60).headers["Location"]
            with open(blob, "rb") as body:
                sep = "&" if "?" in location else "?"
                requests.put(f"{location}{sep}digest={digest}", data=body, timeout=600).raise_for_status()
            t_put = time.perf_counter() - start
            shutil.rmtree(images)
            blob.unlink()
            start = time.perf_counter()
            with requests.get(f"{base}/{digest}", stream=True, timeout=600) as resp, open(blob, "wb") as out:
                for piece in resp.iter_content(1 << 20):
                    out.write(piece)
            t_get = time.perf_counter() - start
            images.mkdir()
            t_unzstd = timed(["sh", "-c", f"zstd -d -T0 -q -c {blob} | tar -C {images} -xf -"])
            t_restore = timed(["runc", "--root", str(self.runc_root), "restore", "--detach", "--image-path",
                               str(images), "--work-path", str(scratch / "wk2"), "--bundle", str(bundle), name])
            after = wait_state(lambda: (bundle / "rootfs" / "state").read_text(),
                               lambda s: int(s["counter"]) > int(frozen["counter"]) + 2)
            assert after["nonce"] == before["nonce"]
        finally:
            self.remove_runc(name)
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)
        return {"checkpoint": t_dump, "compress": t_zstd, "push": t_put, "pull": t_get, "decompress": t_unzstd,
                "restore": t_restore,
                "total": t_dump + t_zstd + t_put + t_get + t_unzstd + t_restore}


# -- report ----------------------------------------------------------------------------------

def settle() -> None:
    """Write back what earlier runs left dirty (registry blobs, Podman's storage: gigabytes by the
    end), so that no run pays for another's writeback. Untimed, before every measured run."""
    os.sync()


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} if runs else {}


def fmt_s(x: float) -> str:
    return f"{x:.2f} s"


def report(results: dict) -> str:
    lines = []
    for size, tools in results["migration"].items():
        ck, pm, fl = (medians(tools.get(k, [])) for k in ("ckpt", "podman", "floor"))
        n = len(tools.get("ckpt", []))
        lines.append(f"\n### {size} MiB, median of {n} runs\n")
        lines.append("| stage | ckpt | Podman | bare tools |\n|---|---|---|---|")
        lines.append(f"| checkpoint (+pack{'' if not pm else ''}) | save: {fmt_s(ck['save'])} | "
                     f"{fmt_s(pm['checkpoint']) if pm else '-'} | {fmt_s(fl['checkpoint'])} + zstd {fmt_s(fl['compress'])} |")
        lines.append(f"| push | (in save) | {fmt_s(pm['push']) if pm else '-'} | {fmt_s(fl['push'])} |")
        lines.append(f"| pull | restore: {fmt_s(ck['restore'])} | {fmt_s(pm['pull']) if pm else '-'} | {fmt_s(fl['pull'])} |")
        lines.append(f"| restore | (in restore) | {fmt_s(pm['restore']) if pm else '-'} | "
                     f"unzstd {fmt_s(fl['decompress'])} + {fmt_s(fl['restore'])} |")
        lines.append(f"| **total** | **{fmt_s(ck['total'])}** | **{fmt_s(pm['total']) if pm else '-'}** | "
                     f"**{fmt_s(fl['total'])}** |")
        lines.append(f"| downtime seen by the workload | {fmt_s(ck['downtime'])} | "
                     f"{fmt_s(pm['downtime']) if pm else '-'} | |")
        lines.append(f"| bytes pushed | {ck['pushed'] / 2**20:.1f} MiB | "
                     f"{pm['pushed'] / 2**20:.1f} MiB |" if pm else f"| bytes pushed | {ck['pushed'] / 2**20:.1f} MiB | - | |")
        if pm and results.get("podman_base_bytes"):
            lines.append(f"| Podman's base image, which its target also needs (pushed once, not timed) | | "
                         f"{results['podman_base_bytes'] / 2**20:.1f} MiB | |")
        lines.append(f"| ckpt peak RSS (save / restore) | {ck['peak_rss_save_kib'] / 1024:.0f} / "
                     f"{ck['peak_rss_restore_kib'] / 1024:.0f} MiB | | |")
        ratios = [f"ckpt / bare tools = {ck['total'] / fl['total']:.2f}x"]
        if pm:
            ratios.insert(0, f"ckpt / Podman = {ck['total'] / pm['total']:.3f}x")
            ratios.append(f"bytes ckpt / Podman = {ck['pushed'] / pm['pushed']:.3f}")
            if results.get("podman_base_bytes"):
                ratios.append(f"bytes ckpt / (Podman + its base image) = "
                              f"{ck['pushed'] / (pm['pushed'] + results['podman_base_bytes']):.3f}")
        lines.append("\nRatios (medians of this run): " + "; ".join(ratios))
    if results.get("repeat"):
        for size, runs in results["repeat"].items():
            m = medians(runs)
            lines.append(f"\n### Repeat checkpoint, {size} MiB, 5% of memory rewritten (median of {len(runs)})\n")
            lines.append(f"- first save pushed {m['first_pushed'] / 2**20:.1f} MiB, second pushed "
                         f"{m['second_pushed'] / 2**20:.1f} MiB: **{m['push_ratio'] * 100:.1f}%**")
            lines.append(f"- target pulled {m['first_pulled'] / 2**20:.1f} MiB, then "
                         f"{m['second_pulled'] / 2**20:.1f} MiB for the second: **{m['pull_ratio'] * 100:.1f}%**")
    if results.get("scaling"):
        lines.append("\n### ckpt cost against memory size (median of runs)\n")
        lines.append("| MiB | save | restore | total | s per GiB | peak RSS save/restore |\n|---|---|---|---|---|---|")
        for size, runs in results["scaling"].items():
            m = medians(runs)
            lines.append(f"| {size} | {fmt_s(m['save'])} | {fmt_s(m['restore'])} | {fmt_s(m['total'])} | "
                         f"{m['total'] / (int(size) / 1024):.2f} | {m['peak_rss_save_kib'] / 1024:.0f} / "
                         f"{m['peak_rss_restore_kib'] / 1024:.0f} MiB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512,2048", help="MiB of workload memory, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scaling", default="", help="extra ckpt-only sizes for the linearity table")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--no-repeat-test", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    sizes = [int(s) for s in opts.sizes.split(",") if s]
    scaling = [int(s) for s in opts.scaling.split(",") if s]
    results: dict = {"machine": machine(), "migration": {}, "repeat": {}, "scaling": {}}
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as tmp, RegistryServer(Path(tmp), auth="none") as reg:
        bench = Bench(Path(tmp), reg)
        if not opts.no_podman:
            results["podman_base_bytes"] = bench.podman_ready()
        rng = random.Random()
        for size in sizes:
            per = results["migration"][str(size)] = {"ckpt": [], "podman": [], "floor": []}
            for i in range(opts.repeat):
                order = ["ckpt", "floor"] + ([] if opts.no_podman else ["podman"])
                rng.shuffle(order)
                for tool in order:
                    tag = f"{size}-{i}-{rng.randrange(1 << 30):x}"
                    fn = {"ckpt": bench.migrate_ckpt, "podman": bench.migrate_podman, "floor": bench.migrate_floor}
                    settle()
                    per[tool].append(fn[tool](size, rng.randrange(1, 1 << 62), tag))
                    print(f"{size} MiB run {i + 1} {tool}: {per[tool][-1]['total']:.2f} s", file=sys.stderr)
            if not opts.no_repeat_test:
                results["repeat"][str(size)] = [bench.repeat_ckpt(size, rng.randrange(1, 1 << 62), f"{size}-{i}")
                                                for i in range(opts.repeat)]
        for size in scaling:
            runs = results["scaling"][str(size)] = []
            for i in range(opts.repeat):
                settle()
                runs.append(bench.migrate_ckpt(size, rng.randrange(1, 1 << 62), f"s{size}-{i}"))
            print(f"scaling {size} MiB done", file=sys.stderr)
        if not opts.no_podman:
            run(["podman", "rmi", "--force", BASE_IMAGE], check=False)
    text = f"Machine: {results['machine']}\n" + report(results)
    print(text)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2))
    return 0


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    versions = "; ".join(run(cmd, check=False).stdout.splitlines()[0] if run(cmd, check=False).stdout else "?"
                         for cmd in (["criu", "--version"], ["runc", "--version"], ["podman", "--version"]))
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB, kernel {os.uname().release}; {versions}"


if __name__ == "__main__":
    sys.exit(main())
