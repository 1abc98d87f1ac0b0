"""Facts about this host that decide whether a checkpoint can run here."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Arch:
    """One architecture under each of its names."""

    oci: str                    # OCI's (Go's GOARCH) name: what checkpoints and image indexes record
    criu: str                   # CRIU's machine type in core-*.img (core.proto's mtype); "" if none
    machines: tuple[str, ...]   # what Linux (`uname -m`) or another system reports on it
    variants: tuple[tuple[str, str], ...] = ()  # machine name -> OCI platform variant


# The one table of architecture names (registry/pull.py and compat/exportdir.py read it too).
ARCHES = (
    Arch("amd64", "X86_64", ("x86_64", "amd64")),
    Arch("arm64", "AARCH64", ("aarch64", "arm64")),
    Arch("arm", "ARM", ("armv7l", "armv6l"), variants=(("armv7l", "v7"), ("armv6l", "v6"))),
    Arch("386", "", ("i686", "i386")),
    Arch("ppc64le", "PPC64", ("ppc64le",)),
    Arch("s390x", "S390", ("s390x",)),
    Arch("riscv64", "RISCV64", ("riscv64",)),
    Arch("loong64", "LOONGARCH64", ("loongarch64",)),
    Arch("mips64le", "MIPS", ("mips64",)),
)
_BY_MACHINE = {machine: a for a in ARCHES for machine in a.machines}
_BY_CRIU = {a.criu: a for a in ARCHES if a.criu}


def oci_arch(machine: str) -> str:
    """The OCI name of machine type `machine` (an unknown one as it is, in lower case)."""
    known = _BY_MACHINE.get(machine.lower())
    return known.oci if known else machine.lower()


def oci_platform(machine: str | None = None) -> str:
    """The OCI platform of `machine` (default: this host's), as "linux/ARCH[/VARIANT]"."""
    machine = (machine or platform.machine()).lower()
    known = _BY_MACHINE.get(machine)
    variant = dict(known.variants).get(machine, "") if known else ""
    return f"linux/{oci_arch(machine)}" + (f"/{variant}" if variant else "")


def criu_arch(mtype: str) -> str:
    """The OCI name of CRIU's machine type `mtype` (an unknown one as it is, in lower case)."""
    known = _BY_CRIU.get(mtype)
    return known.oci if known else mtype.lower()


@dataclass(frozen=True, slots=True)
class HostInfo:
    arch: str
    kernel: str
    cgroup_version: int
    cpu_flags: tuple[str, ...]


def arch() -> str:
    """This host's architecture, by its OCI name."""
    return oci_arch(platform.machine())


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
