#!/usr/bin/env python3
"""Build an OCI runtime bundle for the sample workload: busybox rootfs + workload + config.json.

    make_bundle.py BUNDLE_DIR [--mem MiB] [--interval-ms N] [--verify-every N] [--seed N] [--churn PCT]

Needs busybox-static, gcc with static libc, and runc (for `runc spec`).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")


def build_rootfs(rootfs: Path) -> None:
    for sub in ("bin", "tmp", "proc", "dev", "sys", "etc"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    subprocess.run(["gcc", "-O2", "-static", "-o", str(rootfs / "bin" / "workload"), str(HERE / "workload.c")],
                   check=True)
    (rootfs / "etc" / "hostname").write_text("sample\n")


def write_spec(bundle: Path, args: list[str]) -> None:
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    path = bundle / "config.json"
    spec = json.loads(path.read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args
    # The VMs this runs on cap RLIMIT_NOFILE at 20000; runc's default asks for more.
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = "sample"
    path.write_text(json.dumps(spec, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--mem", type=int, default=16, help="MiB of memory the workload holds")
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--verify-every", type=int, default=10)
    parser.add_argument("--seed", type=int, help="memory content seed (default: fixed)")
    parser.add_argument("--churn", type=int, default=5, help="percent of memory rewritten on SIGUSR1")
    opts = parser.parse_args()
    if not BUSYBOX.exists():
        print("make_bundle: /bin/busybox missing (install busybox-static)", file=sys.stderr)
        return 1
    opts.bundle.mkdir(parents=True, exist_ok=True)
    build_rootfs(opts.bundle / "rootfs")
    args = ["/bin/workload", "--mem", str(opts.mem), "--state", "/state", "--interval-ms", str(opts.interval_ms),
            "--verify-every", str(opts.verify_every), "--churn", str(opts.churn)]
    if opts.seed is not None:
        args += ["--seed", str(opts.seed)]
    write_spec(opts.bundle, args)
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
