"""Facts about this host that decide whether a checkpoint can run here."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# OCI/Go names for the machine types Linux reports.
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


@dataclass(frozen=True, slots=True)
class HostInfo:
    arch: str
    kernel: str
    cgroup_version: int
    cpu_flags: tuple[str, ...]


def arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def cgroup_version() -> int:
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return tuple(sorted(set(value.split())))
    return ()


def host_info() -> HostInfo:
    return HostInfo(arch=arch(), kernel=os.uname().release, cgroup_version=cgroup_version(),
                    cpu_flags=cpu_flags())


def tree_rss(pid: int) -> int:
    """Resident memory, in bytes, of `pid` and all its descendants (0 if they are gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        proc = Path(f"/proc/{current}")
        try:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in (proc / "task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total
