"""Who is checkpointing: walk up from the action script to the `runc checkpoint` that started CRIU.

CRIU runs the action script as its own child, and runc (started by podman, CRI-O, containerd's
shim or a person) runs CRIU. runc's command line names the container and its state directory
(--root), and says which CRIU options the dump used.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..criu.options import CriuOptions

# runc's global options that take a value, and `runc checkpoint`'s.
_GLOBAL_VALUES = {"root", "log", "log-format", "criu", "rootless"}
_CHECKPOINT_VALUES = {"image-path", "work-path", "parent-path", "page-server", "manage-cgroups-mode", "empty-ns",
                      "status-fd", "lsm-profile", "lsm-mount-context"}
MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class RuncCall:
    """A running `runc [--root R] checkpoint [flags] ID`, as read from /proc."""

    pid: int
    binary: str
    root: Path | None
    container_id: str
    image_path: str | None
    options: CriuOptions
    pre_dump: bool = False
    remote_pages: bool = False  # --lazy-pages or --page-server: the pages are not in the image dir
    parent: tuple[str, ...] = ()  # the command line of what ran runc


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces and parentheses: the fields after the last ")" are safe.
        return int(f.read().rsplit(")", 1)[1].split()[1])


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def age(pid: int) -> float:
    """Seconds since the process started (to the clock tick, 10 ms on most kernels)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_time(pid) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [arg.decode(errors="replace") for arg in f.read().split(b"\0")[:-1]]


def find_runc_checkpoint(start: int) -> RuncCall | None:
    """The `runc checkpoint` among the ancestors of `start`, or None (CRIU run some other way)."""
    pid = start
    for _ in range(MAX_DEPTH):
        try:
            pid = parent_of(pid)
            argv = cmdline(pid)
        except (OSError, IndexError, ValueError):
            return None
        if pid <= 1:
            return None
        call = parse_runc_argv(argv)
        if call is not None:
            try:
                binary = os.readlink(f"/proc/{pid}/exe")
                parent = tuple(cmdline(parent_of(pid)))
            except (OSError, IndexError, ValueError):
                binary, parent = argv[0], ()
            return RuncCall(pid=pid, binary=binary, parent=parent, **call)
    return None


def parse_runc_argv(argv: list[str]) -> dict | None:
    """The fields of a RuncCall from runc's argv, or None if it is not `runc ... checkpoint ... ID`."""
    if not argv or not os.path.basename(argv[0]).startswith("runc"):
        return None
    globals_, rest = _flags(argv[1:], _GLOBAL_VALUES)
    if not rest or rest[0] != "checkpoint":
        return None
    flags, positional = _flags(rest[1:], _CHECKPOINT_VALUES)
    if len(positional) != 1:
        return None

    def on(name: str) -> bool:
        return flags.get(name, "false") != "false"

    root = globals_.get("root")
    options = CriuOptions.from_flags(on)
    return {"root": Path(root) if root else None, "container_id": positional[0],
            "image_path": flags.get("image-path"), "options": options, "pre_dump": on("pre-dump"),
            "remote_pages": on("lazy-pages") or bool(flags.get("page-server"))}


def _flags(args: list[str], takes_value: set[str]) -> tuple[dict[str, str], list[str]]:
    """Go-style flags up to the first positional argument: ({name: value}, the remaining args)."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return flags, args[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return flags, args[i:]
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            if name in takes_value and i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                value = "true"
        flags[name] = value
        i += 1
    return flags, []
