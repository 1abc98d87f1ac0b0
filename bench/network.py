#!/usr/bin/env python3
"""What bringing a container's network back costs (docs/network.md), on this machine, in one run.

    sudo .venv/bin/python bench/network.py [--repeat 15]

One runc container runs samples/workloads/tcp_pair.c (listener only: a checkpoint without
established connections restores in every variant) in a network namespace of its own. It is
checkpointed once (--leave-running); the same images are then restored again and again, the
variants interleaved so machine noise hits all alike:

  bare       runc restore with no CRIU config: what ckpt did before; loopback stays DOWN
  ckpt       the config ckpt writes: the action script that brings lo back (iptables lock)
  nftables   the same with CRIU's nftables lock (what a host without iptables gets)

It also times a dump with each lock, the save-side read of the namespace (netns.read, which runs
beside the save's preflight), and the nftables feature probe (paid only where iptables is missing).
Every restore is checked: the listener answers on 127.0.0.1 after the ckpt variants.
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
sys.path.insert(0, str(REPO))

from checkpointer.criu import config as criu_config  # noqa: E402
from checkpointer.criu import netns, probe  # noqa: E402


def run(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, check=check)


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ckpt-bench-net-"))  # 0700
    root, bundle = work / "runc-root", work / "bundle"
    root.mkdir()
    name = f"bench-net-{work.name[-8:]}"
    try:
        subprocess.run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(bundle)], check=True)
        subprocess.run(["gcc", "-O2", "-static", "-o", str(bundle / "rootfs" / "bin" / "tcp_pair"),
                        str(REPO / "samples" / "workloads" / "tcp_pair.c")], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = ["/bin/tcp_pair", "serve", "--state", "/state", "--port", "7000", "--clients", "0"]
        (bundle / "config.json").write_text(json.dumps(spec))
        runc = ["runc", "--root", str(root)]
        subprocess.run([*runc, "run", "--detach", "--bundle", str(bundle), name], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        time.sleep(0.3)
        pid = json.loads(run(*runc, "state", name).stdout)["pid"]
        state = netns.read(pid, netns.PRIVATE)
        read_times = [timed(lambda: netns.read(pid, netns.PRIVATE)) for _ in range(opts.repeat * 2)]

        confs: dict[str, Path | None] = {"bare": None}
        for variant, lock in (("ckpt", None), ("nftables", criu_config.NFTABLES)):
            directory = work / variant
            directory.mkdir()
            script = criu_config.write_script(directory, "netns.sh",
                                              netns.restore_script(state.loopback, *netns.tools()))
            confs[variant] = criu_config.write(directory, criu_config.CriuConfig(lock, script))
        lock_confs = {"iptables": None, "nftables": criu_config.write(work, criu_config.CriuConfig("nftables"))}

        images = work / "images"
        dumps: dict[str, list[float]] = {lock: [] for lock in lock_confs}
        for i in range(opts.repeat):
            for lock, conf in lock_confs.items():
                shutil.rmtree(images, ignore_errors=True)
                images.mkdir()
                env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **criu_config.environment(conf)}
                dumps[lock].append(timed(lambda: run(*runc, "checkpoint", "--leave-running", "--image-path",
                                                     str(images), "--work-path", str(work), name, env=env)))

        restores: dict[str, list[float]] = {variant: [] for variant in confs}
        for i in range(opts.repeat):
            for variant, conf in confs.items():
                copy = f"{name}-{variant}-{i}"
                env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **criu_config.environment(conf)}
                argv = [*runc, "restore", "--detach", "--image-path", str(images), "--work-path", str(work),
                        "--bundle", str(bundle), copy]
                restores[variant].append(timed(lambda: subprocess.run(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    check=True)))
                restored = json.loads(run(*runc, "state", copy).stdout)["pid"]
                answers = run("nsenter", "-t", str(restored), "-n", str(bundle / "rootfs" / "bin" / "tcp_pair"), "ask",
                              "127.0.0.1", "7000", check=False).returncode == 0
                if answers != (variant != "bare"):
                    raise SystemExit(f"{variant}: the listener {'does not answer' if variant != 'bare' else 'answers'}")
                run(*runc, "delete", "--force", copy)

        probe.has_feature.cache_clear()
        probe_times = []
        for _ in range(5):
            probe.has_feature.cache_clear()
            probe_times.append(timed(lambda: probe.has_feature("network_lock_nftables")))

        med = {k: statistics.median(v) * 1000 for k, v in restores.items()}
        print(f"runc restore, median of {opts.repeat} (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
        print(f"  ckpt - bare: {med['ckpt'] - med['bare']:+.1f} ms ({med['ckpt'] / med['bare']:.2f}x); "
              f"nftables - ckpt: {med['nftables'] - med['ckpt']:+.1f} ms")
        dmed = {k: statistics.median(v) * 1000 for k, v in dumps.items()}
        print("runc checkpoint --leave-running, median (ms): " + ", ".join(f"{k} lock {v:.1f}" for k, v in dmed.items()))
        print(f"netns.read at save, median of {len(read_times)}: {statistics.median(read_times) * 1000:.1f} ms "
              "(beside the preflight)")
        print(f"nftables feature probe, median of 5: {statistics.median(probe_times) * 1000:.1f} ms "
              "(only where iptables is missing)")
    finally:
        listing = run("runc", "--root", str(root), "list", "-q", check=False).stdout.split()
        for cid in listing:
            run("runc", "--root", str(root), "delete", "--force", cid, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
