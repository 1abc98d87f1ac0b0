"""A CRIU configuration file for one save or restore, handed to CRIU through its environment.

CRIU reads the file named by $CRIU_CONFIG_FILE when it starts, also as the `criu swrk` that runc
and pycriu drive (runc's RPC options and /etc/criu/runc.conf are applied after it and win). ckpt
says there what runc and Podman have no flag for: which network lock to use, and the action
script that brings a restored network namespace's loopback back (netns.py). The file, and every
script beside it, is created in the run's private scratch directory, never at a shared path.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependency, StorageError
from . import netns, probe

ENV = "CRIU_CONFIG_FILE"
NFTABLES = "nftables"
SKIP = "skip"  # CRIU locks nothing: ckpt holds a pod's network lock itself (runtime/pod_lock.py)
# What CRIU's default (iptables) lock executes: the -restore tools lock a network namespace, the
# plain ones lock each TCP connection of a process in the host's namespace.
IPTABLES_TOOLS = ("iptables-restore", "ip6tables-restore", "iptables", "ip6tables")
LOCK_HINT = ("install iptables (Debian: apt-get install iptables), or a CRIU built with nftables "
             "support (`criu check --feature network_lock_nftables`; the CRIU scripts/setup.sh installs has it)")


@dataclass(frozen=True, slots=True)
class CriuConfig:
    network_lock: str | None = None  # "nftables", "skip", or None for CRIU's default (iptables)
    action_script: Path | None = None

    @property
    def empty(self) -> bool:
        return self.network_lock is None and self.action_script is None

    def render(self) -> str:
        lines = ["# written by ckpt for one CRIU run"]
        if self.network_lock:
            lines.append(f"network-lock {self.network_lock}")
        if self.action_script:
            lines.append(f"action-script {_word(str(self.action_script))}")
        return "\n".join(lines) + "\n"


def network_lock(*, needs_lock: bool, which: Callable[[str], str | None] = shutil.which,
                 has_nftables: Callable[[], bool] = lambda: probe.has_feature("network_lock_nftables")) -> str | None:
    """The network lock CRIU must use on this host: None (its iptables default) while the iptables
    tools are on PATH, else nftables if this CRIU has it. `needs_lock`: the processes have a network
    namespace of their own, or established TCP connections (CRIU locks nothing otherwise)."""
    if not needs_lock or all(which(tool) for tool in IPTABLES_TOOLS):
        return None
    if has_nftables():
        return NFTABLES
    missing = ", ".join(tool for tool in IPTABLES_TOOLS if not which(tool))
    raise MissingDependency(f"CRIU must lock the container's network, and this host has neither {missing} "
                            "(its iptables lock) nor CRIU's nftables lock", hint=LOCK_HINT)


def restore_config(directory: Path, network: netns.NetworkState | None, *, tcp_established: bool,
                   locked: bool = False) -> Path | None:
    """The config for a restore of processes whose network was `network` (None: the host's): the
    network lock this host has (none with `locked`: ckpt holds the pod's lock), and for a private
    namespace the script that brings back its loopback (netns.py)."""
    namespace = network.namespace if network else netns.HOST
    lock = SKIP if locked else network_lock(needs_lock=namespace != netns.HOST or tcp_established)
    script = None
    if network is not None and network.namespace == netns.PRIVATE and network.loopback is not None:
        text = netns.restore_script(network.loopback, *netns.tools())
        script = write_script(directory, "netns.sh", text) if text else None
    return write(directory, CriuConfig(network_lock=lock, action_script=script))


def write(directory: Path, config: CriuConfig) -> Path | None:
    """Write `config` into the private `directory`; None if it has nothing to say."""
    if config.empty:
        return None
    return create_private(directory / "criu.conf", config.render(), 0o600)


def write_script(directory: Path, name: str, text: str) -> Path:
    """An executable script in the private `directory`; CRIU executes action scripts directly."""
    if os.statvfs(directory).f_flag & os.ST_NOEXEC:
        raise StorageError(f"{directory} is on a filesystem mounted noexec, and CRIU must run a script from it",
                           hint="set CKPT_NO_TMPFS=1 to keep scratch files under $CKPT_HOME, on an exec mount")
    return create_private(directory / name, text, 0o700)


def criu_wrapper(directory: Path, config: Path) -> Path:
    """A stand-in for the criu binary that starts CRIU with `config`: for runtimes that do not pass
    their environment on to CRIU (Podman runs runc with only PATH and XDG_RUNTIME_DIR), given to
    runc as its --criu binary."""
    text = f"#!/bin/sh\n{ENV}={shlex.quote(str(config))} exec {shlex.quote(probe.criu_path())} \"$@\"\n"
    return write_script(directory, "criu", text)


def environment(config: Path | None) -> dict[str, str]:
    """The variables that make CRIU read `config` (none without one)."""
    return {ENV: str(config)} if config else {}


def create_private(path: Path, text: str, mode: int) -> Path:
    """Create `path` afresh (never through a link, never over an existing file) with `text`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def _word(text: str) -> str:
    """A value CRIU's config parser reads as one word: it splits at blanks and stops at a '#'
    unless the value is in double quotes."""
    if any(c in text for c in "\"\\\n"):
        raise ValueError(f"cannot put {text!r} in a CRIU config")
    return text if re.fullmatch(r"[A-Za-z0-9_./+-]+", text) else f'"{text}"'
