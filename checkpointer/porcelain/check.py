"""`ckpt check`: is this host ready to save and restore, and what to do about each gap."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from ..criu import config as criu_config
from ..criu import images as criu_images
from ..criu import netns, probe
from ..errors import CkptError
from ..host import HostInfo, host_info
from ..runtime.runc import Runc
from .home import Home


@dataclass(frozen=True, slots=True)
class Finding:
    what: str
    ok: bool
    detail: str
    hint: str = ""


def check(*, home: Home | None = None) -> list[Finding]:
    home = home or Home()
    found: list[Finding] = []
    info = host_info()
    found.append(Finding("host", True, f"{info.arch}, kernel {info.kernel}, cgroup v{info.cgroup_version}"))
    found.append(Finding("root", os.geteuid() == 0, f"uid {os.geteuid()}",
                         "" if os.geteuid() == 0 else "CRIU needs root (or CAP_CHECKPOINT_RESTORE and more)"))
    try:
        criu = probe.probe()
        found.append(_criu_finding(criu, info))
        for feature, present in criu.features:
            found.append(Finding(f"criu feature {feature}", present, "available" if present else "missing",
                                 "" if present else _FEATURE_HINTS.get(feature, "")))
        found.append(network_lock_finding(shutil.which, dict(criu.features).get("network_lock_nftables", False)))
    except CkptError as exc:
        found.append(Finding("criu", False, str(exc), exc.hint or ""))
    found.append(_network_tools())
    try:
        criu_images._images()
        found.append(Finding("pycriu", True, "importable"))
    except CkptError as exc:
        found.append(Finding("pycriu", False, str(exc), exc.hint or ""))
    try:
        runc = Runc()
        found.append(Finding("runc", True, f"{runc.version()} at {runc.binary}"))
    except CkptError as exc:
        found.append(Finding("runc", False, str(exc), exc.hint or ""))
    found.append(_pipe_size())
    podman = shutil.which("podman")
    found.append(Finding("podman", bool(podman), podman or "not installed",
                         "" if podman else "only needed to save or restore Podman containers"))
    try:
        home.store()
        writable = os.access(home.store_path, os.W_OK)
        found.append(Finding("store", writable, str(home.store_path),
                             "" if writable else "set CKPT_HOME to a writable directory"))
    except OSError as exc:
        found.append(Finding("store", False, f"{home.store_path}: {exc}", "set CKPT_HOME to a writable directory"))
    return found


def _criu_finding(criu: probe.CriuInfo, info: HostInfo) -> Finding:
    detail = f"{criu.version} at {criu.path}: {criu.check_output}"
    if criu.version_tuple < (4,):
        return Finding("criu", False, detail, probe.INSTALL_HINT)
    if not probe.sockets_work(criu.version, info.kernel):
        return Finding("criu", False, f"{criu.version} on kernel {info.kernel}: containers with network sockets "
                                      "cannot be checkpointed (CRIU < 4.2 on kernel >= 6.16)", probe.INSTALL_HINT)
    return Finding("criu", criu.check_ok, detail)


def network_lock_finding(which, nftables: bool) -> Finding:
    """CRIU locks the network of every container with a namespace of its own while it dumps and restores."""
    present = [tool for tool in criu_config.IPTABLES_TOOLS if which(tool)]
    if len(present) == len(criu_config.IPTABLES_TOOLS):
        return Finding("network lock", True, f"iptables ({which('iptables-restore')})")
    if nftables:
        return Finding("network lock", True, "nftables (CRIU's network_lock_nftables; no "
                       f"{', '.join(t for t in criu_config.IPTABLES_TOOLS if t not in present)})")
    return Finding("network lock", False, "neither iptables-restore nor CRIU's nftables lock: containers with a "
                   "network namespace of their own cannot be checkpointed", criu_config.LOCK_HINT)


def _network_tools() -> Finding:
    try:
        nsenter, ip = netns.tools()
    except CkptError as exc:
        return Finding("ip, nsenter", False, str(exc), exc.hint or "")
    return Finding("ip, nsenter", True, f"{ip}, {nsenter} (loopback of restored containers)")


_FEATURE_HINTS = {
    "mem_dirty_track": "the kernel does not track soft-dirty pages: every save is a full dump",
    "uffd-noncoop": "no userfaultfd: lazy (post-copy) restore is unavailable",
    "network_lock_nftables": "",  # the network lock finding tells whether it matters
}


def _pipe_size() -> Finding:
    """CRIU moves memory through pipes no bigger than fs.pipe-max-size; the 1 MiB default makes
    it dump in 256-page batches (measured: a 512 MiB dump took 0.86 s at 1 MiB, 0.52 s at 16 MiB)."""
    try:
        size = int(open("/proc/sys/fs/pipe-max-size").read())
    except (OSError, ValueError):
        return Finding("pipe-max-size", True, "unknown")
    big = size >= 16 << 20
    return Finding("pipe-max-size", big, f"{size} bytes",
                   "" if big else "sysctl -w fs.pipe-max-size=16777216 makes CRIU dumps faster")
