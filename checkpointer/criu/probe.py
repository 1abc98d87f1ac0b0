"""What the installed CRIU is and can do, asked of the `criu` binary itself."""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import MissingDependency

MIN_VERSION = (3, 17)
INSTALL_HINT = "install CRIU >= 4.2 (on Debian 12 and 13 run scripts/setup.sh, which takes it from Debian forky)"
# Kernels from 6.16 on refuse SO_PASSCRED/SO_PASSSEC on sockets other than unix ones; CRIU before
# 4.2 asks for both on every socket it dumps, so it cannot dump an inet socket there.
SOCKETS_KERNEL = (6, 16)
SOCKETS_CRIU = (4, 2)
# Features that decide what ckpt can offer; probed with `criu check --feature NAME`.
FEATURES = ("mem_dirty_track", "uffd-noncoop", "timens", "pidfd_store", "network_lock_nftables")


@dataclass(frozen=True, slots=True)
class CriuInfo:
    path: str
    version: str
    check_ok: bool
    check_output: str
    features: tuple[tuple[str, bool], ...] = ()

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def criu_path() -> str:
    path = shutil.which("criu")
    if not path:
        raise MissingDependency("criu is not installed", hint=INSTALL_HINT)
    return path


def version() -> str:
    out = subprocess.run([criu_path(), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Version:\s*(\S+)", out)
    if not match:
        raise MissingDependency(f"cannot tell the CRIU version from {out.strip()!r}", hint=INSTALL_HINT)
    return match.group(1)


def sockets_work(criu_version: str, kernel: str) -> bool:
    """Whether this CRIU can checkpoint network sockets on this kernel (see SOCKETS_KERNEL)."""
    return parse_version(kernel)[:2] < SOCKETS_KERNEL or parse_version(criu_version)[:2] >= SOCKETS_CRIU


@functools.cache
def has_feature(name: str) -> bool:
    """`criu check --feature NAME` (asked once per process: ~60 ms each)."""
    res = subprocess.run([criu_path(), "check", "--feature", name], capture_output=True, text=True, check=False)
    return res.returncode == 0


def probe(features: tuple[str, ...] = FEATURES) -> CriuInfo:
    path = criu_path()
    check = subprocess.run([path, "check"], capture_output=True, text=True, check=False)
    found = []
    for name in features:
        res = subprocess.run([path, "check", "--feature", name], capture_output=True, text=True, check=False)
        found.append((name, res.returncode == 0))
    output = (check.stdout + check.stderr).strip()
    return CriuInfo(path=path, version=version(), check_ok=check.returncode == 0 and "Looks good" in output,
                    check_output=output, features=tuple(found))
