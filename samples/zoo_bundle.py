#!/usr/bin/env python3
"""OCI runtime bundles for the workload zoo (samples/workloads/): small static programs, one per
kind of kernel object CRIU must carry, in a busybox root filesystem.

    zoo_bundle.py BUNDLE PROGRAM [ARG...]     # e.g. zoo_bundle.py /tmp/b threads --threads 8

A template holds the root filesystem with every zoo program (compiled once); a bundle is a copy
of it whose process runs `/bin/PROGRAM ARG... --state /state`. Needs busybox-static, gcc with a
static libc and runc (for `runc spec`), like samples/make_bundle.py, whose rootfs and spec it
reuses.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "workloads"
sys.path.insert(0, str(HERE))

from make_bundle import build_rootfs, write_spec  # noqa: E402


def programs() -> list[str]:
    """The zoo's programs: one per C file in samples/workloads/."""
    return sorted(path.stem for path in WORKLOADS.glob("*.c"))


def build_template(dest: Path) -> Path:
    """A bundle directory whose rootfs has busybox and every zoo program in /bin."""
    rootfs = dest / "rootfs"
    build_rootfs(rootfs)
    for name in programs():
        subprocess.run(["gcc", "-O2", "-static", "-pthread", "-I", str(WORKLOADS), "-o", str(rootfs / "bin" / name),
                        str(WORKLOADS / f"{name}.c")], check=True)
    write_spec(dest, ["/bin/true"])
    return dest


def make_bundle(template: Path, dest: Path, program: str, args: list[str] = ()) -> Path:
    """A copy of the template that runs one zoo program, its state file at /state."""
    if not (template / "rootfs" / "bin" / program).exists():
        raise ValueError(f"no zoo program {program!r} (have: {', '.join(programs())})")
    shutil.copytree(template, dest, symlinks=True)
    set_args(dest, [f"/bin/{program}", *args, "--state", "/state"])
    return dest


def set_args(bundle: Path, args: list[str]) -> None:
    path = bundle / "config.json"
    spec = json.loads(path.read_text())
    spec["process"]["args"] = args
    path.write_text(json.dumps(spec, indent=2))


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    dest, program, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    template = dest.with_name(dest.name + ".template")
    build_template(template)
    try:
        make_bundle(template, dest, program, args)
    finally:
        shutil.rmtree(template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
