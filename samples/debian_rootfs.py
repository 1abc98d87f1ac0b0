#!/usr/bin/env python3
"""A root filesystem of real programs from Debian's packages (redis-server, redis-cli, python3),
built from the host's apt sources and cached between runs.

    debian_rootfs.py [--cache DIR]      # builds the rootfs or reuses the cached one; prints its path

How: `apt-get install --download-only` against an empty package status resolves every
dependency and fetches the .deb files (into a private directory; the host's own package state is
neither read nor written), `dpkg-deb -x` unpacks them into a staging tree, and the rootfs gets
only what the programs run with: the programs, the shared libraries they and Python's extension
modules load (followed through `readelf -d`), Python's standard library, busybox for a shell,
and a minimal /etc. No maintainer script runs. This takes ~10 s and ~30 MB of downloads, where
`debootstrap --variant=minbase` took ~50 s for a 243 MB tree (which a checkpoint would carry).

The cache (default /var/cache/ckpt-tests, created 0700; $CKPT_TEST_CACHE overrides) holds one
entry per package request: the rootfs and the exact package versions it was built from
(packages.lock). An entry is reused while apt's candidate versions of all those packages are
the same; when any changed (a security update), it is rebuilt.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("redis-server", "python3")
PROGRAMS = ("usr/bin/redis-server", "usr/bin/redis-cli", "usr/bin/python3")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64")
PYTHON_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "config-3"}
BUSYBOX = Path("/bin/busybox")
FORMAT = "1"  # bump when what goes into the rootfs changes: old cache entries are then not reused
DEFAULT_CACHE = Path(os.environ.get("CKPT_TEST_CACHE", "/var/cache/ckpt-tests"))
# apt against an empty package status of its own: no lock on, and no cache written over, the host's.
APT_PRIVATE = ("-o", "Debug::NoLocking=1", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
               "-o", "APT::Get::AllowUnauthenticated=false", "-o", "APT::Install-Recommends=false")


class BuildError(RuntimeError):
    pass


def ensure(cache: Path = DEFAULT_CACHE) -> Path:
    """The path of a valid cached rootfs, built first if there is none."""
    base = private_dir(cache) / "debian-rootfs"
    base.mkdir(mode=0o700, exist_ok=True)
    entry = base / hashlib.sha256(f"{FORMAT} {' '.join(PACKAGES)}".encode()).hexdigest()[:16]
    with os.fdopen(os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse
        if is_current(entry):
            return entry / "rootfs"
        fresh = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
        try:
            build(fresh)
            old = base / f".old-{os.getpid()}"
            if entry.exists():
                entry.rename(old)
            fresh.rename(entry)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return entry / "rootfs"


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing, and refused unless it is a real directory only we can write:
    the rootfs built there is run as root."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise BuildError(f"{path} must be a directory owned by uid {os.geteuid()} that no one else can write")
    return path


def is_current(entry: Path) -> bool:
    """The entry is complete and apt would still pick the very versions it was built from."""
    try:
        locked = dict(line.split("=", 1) for line in (entry / "packages.lock").read_text().split())
    except (OSError, ValueError):
        return False
    if not (entry / "rootfs").is_dir():
        return False
    return candidates(sorted(locked)) == locked


def candidates(names: list[str]) -> dict[str, str]:
    """apt's choice for each package on an empty system (as the build resolved them, whatever
    the host has installed from other suites)."""
    with tempfile.NamedTemporaryFile(prefix="ckpt-empty-status-") as empty:
        out = run(["apt-cache", *APT_PRIVATE, "-o", f"Dir::State::status={empty.name}", "policy", *names])
    found, name = {}, None
    for line in out.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name = line[:-1]
        elif name and line.strip().startswith("Candidate:"):
            found[name] = line.split(":", 1)[1].strip()
    return found


def build(entry: Path) -> None:
    debs, staging, rootfs = entry / "debs", entry / "staging", entry / "rootfs"
    (debs / "partial").mkdir(parents=True)
    (entry / "status").touch()
    run(["apt-get", *APT_PRIVATE, "-q", "-y", "-o", f"Dir::State::status={entry / 'status'}",
         "-o", f"Dir::Cache::archives={debs}", "install", "--download-only", *PACKAGES])
    locked = {}
    for deb in sorted(debs.glob("*.deb")):
        name, version = run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).split("\n")[:2]
        locked[name.split(":", 1)[1].strip()] = version.split(":", 1)[1].strip()
        run(["dpkg-deb", "-x", str(deb), str(staging)])
    if not locked:
        raise BuildError("apt-get downloaded no packages")
    assemble(staging, rootfs)
    (entry / "packages.lock").write_text("".join(f"{k}={v}\n" for k, v in sorted(locked.items())))
    shutil.rmtree(debs)
    shutil.rmtree(staging)
    (entry / "status").unlink()


def assemble(staging: Path, rootfs: Path) -> None:
    """Copy what the programs need at run time from the unpacked packages into `rootfs`."""
    python = sorted(staging.glob("usr/lib/python3.[0-9]*"))
    if not python:
        raise BuildError("no Python standard library among the packages")
    stdlib = python[-1].relative_to(staging)
    elves = [Path(p) for p in PROGRAMS]
    for rel in PROGRAMS:
        copy(staging, rootfs, Path(rel))
    shutil.copytree(staging / stdlib, rootfs / stdlib, symlinks=False,
                    ignore=lambda d, names: [n for n in names if n in PYTHON_SKIP or n.startswith("config-")])
    elves += [p.relative_to(rootfs) for p in (rootfs / stdlib / "lib-dynload").glob("*.so")]
    for rel in shared_libraries(staging, elves):
        copy(staging, rootfs, rel)
    for sub in ("tmp", "proc", "dev", "sys", "etc", "bin", "srv", "root"):
        (rootfs / sub).mkdir(exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "ls", "sleep", "ps", "ip"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")


def shared_libraries(staging: Path, elves: list[Path]) -> list[Path]:
    """Every shared library the given ELF files load, transitively, and the dynamic loader."""
    needed: set[Path] = set()
    todo = list(elves)
    while todo:
        text = run(["readelf", "-d", "-l", str(staging / todo.pop())])
        interp = re.search(r"Requesting program interpreter: /(\S+)\]", text)
        names = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", text)
        for rel in ([Path(interp.group(1))] if interp else []) + [find_library(staging, n) for n in names]:
            if rel not in needed:
                needed.add(rel)
                todo.append(rel)
    return sorted(needed)


def find_library(staging: Path, name: str) -> Path:
    for directory in LIBRARY_DIRS:
        if (staging / directory / name).exists():
            return Path(directory) / name
    raise BuildError(f"shared library {name} is in none of the packages")


def copy(staging: Path, rootfs: Path, rel: Path) -> None:
    """Copy one file (its content: links are followed within the staging tree) to the same path."""
    source = staging / rel
    while source.is_symlink():
        target = Path(os.readlink(source))
        source = staging / target.relative_to("/") if target.is_absolute() else source.parent / target
        if not source.resolve().is_relative_to(staging.resolve()):
            raise BuildError(f"{rel} links out of the packages' tree")
    dest = rootfs / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


def run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})
    if res.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    opts = parser.parse_args()
    print(ensure(opts.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
