"""The action script's first look, made cheap for every checkpoint that is not ckpt's business.

With the action script in /etc/criu/runc.conf, every runc checkpoint on the host runs it (and
CRIU runs it twice). This module uses only `os`, `sys`, `time` and `json` and runs under
`python -I -S` (no site-packages: about 6 ms to start). It walks up to the `runc checkpoint`
that started CRIU and looks for the annotation's name in runc's state file for the container;
for an annotated container it also sees whether this dump already has its job (the second call).
Only when there is work, or it cannot tell, does it exec the full action script (action.py). It
never decides "yes" on its own: action.py reads the annotations properly through `runc state`.
"""
import json
import os
import sys
import time

MARK = b"dev.ckpt.publish-to"
FULL = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from checkpointer.hooks.action import main; "
        "sys.exit(main([]))")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def started(pid: int) -> float:
    """When process `pid` started, in seconds since the epoch (to the clock tick)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
    with open("/proc/stat", "rb") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def job_id(criu_pid: int, container_id: str) -> str:
    """The spool's name for the dump that CRIU process `criu_pid` makes of `container_id`: the
    same for both calls of the script, and sorted by time."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started(criu_pid)))
    safe = "".join(c if c in _SAFE else "-" for c in container_id)[:24]
    return f"{stamp}-{safe}-{criu_pid}"


def criu_pid() -> int:
    """CRIU's pid: CRTOOLS_IMAGE_DIR is /proc/<criu-pid>/fd/N; else our parent is CRIU."""
    parts = os.environ.get("CRTOOLS_IMAGE_DIR", "").split("/")
    if len(parts) >= 3 and parts[1] == "proc" and parts[2].isdigit():
        return int(parts[2])
    return os.getppid()


def runc_call(start: int) -> tuple[bytes | None, str] | None:
    """(runc's state directory or None if it cannot be told, the container id) of the
    `runc checkpoint` among the ancestors of `start`; None when there is none."""
    pid = start
    for _ in range(6):
        try:
            pid = _parent(pid)
            argv = _argv(pid)
        except (OSError, ValueError, IndexError):
            return None
        if pid <= 1:
            return None
        if argv and os.path.basename(argv[0]).startswith(b"runc") and b"checkpoint" in argv and len(argv) >= 3:
            return _root(argv[1:argv.index(b"checkpoint")]), argv[-1].decode(errors="surrogateescape")
    return None


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def _argv(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def _root(global_args: list[bytes]) -> bytes | None:
    for i, arg in enumerate(global_args):
        name, eq, value = arg.lstrip(b"-").partition(b"=")
        if name == b"root" and arg.startswith(b"-"):
            if eq:
                return value
            return global_args[i + 1] if i + 1 < len(global_args) else None
    # runc's default for root; a rootless runc's ($XDG_RUNTIME_DIR/runc) is left to action.py
    return b"/run/runc" if os.geteuid() == 0 else None


def _annotated(root: bytes, container_id: str) -> bool:
    try:
        with open(os.path.join(root, container_id.encode(errors="surrogateescape"), b"state.json"), "rb") as f:
            return MARK in f.read()
    except OSError:
        return True  # cannot tell


def _already_spooled(container_id: str) -> bool:
    spool = os.environ.get("CKPT_HOOKS_SPOOL")
    if not spool:
        with open(os.environ["CKPT_HOOKS_CONFIG"]) as f:
            spool = json.load(f)["dev.ckpt.hooks.spool"]
    return os.path.isdir(os.path.join(spool, "jobs", job_id(criu_pid(), container_id)))


def main() -> int:
    try:
        found = runc_call(os.getpid())
        if found is None:
            return 0  # CRIU was not started by `runc checkpoint`
        root, container_id = found
        if root is not None and not _annotated(root, container_id):
            return 0
        if _already_spooled(container_id):
            return 0  # the second call for this dump
    except Exception:  # when in doubt, the full script decides (and logs)
        pass
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execv(sys.executable, [sys.executable, "-I", "-c", FULL, package_root])
    return 0  # not reached
