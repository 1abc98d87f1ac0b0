"""CRIU through its RPC interface (pycriu, `criu swrk`): dump and restore a bare process tree.

pycriu is a system package (Debian: python3-pycriu), imported only when a bare process is
checkpointed. Its client reads exactly one reply per request, so notify scripts stay off.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CriuFailed, MissingDependency, NotFound
from .config import NFTABLES
from .diagnose import criu_failed
from .options import CriuOptions
from .probe import INSTALL_HINT, criu_path

LOG_LEVEL = 4  # CRIU's most verbose: the log is only read when something failed
DUMP_LOG = "dump.log"
RESTORE_LOG = "restore.log"


@dataclass(frozen=True, slots=True)
class Restored:
    pid: int


def _pycriu() -> Any:
    """The module pycriu.criu (the package shadows that name with the class `criu`)."""
    try:
        return importlib.import_module("pycriu.criu")
    except ImportError:
        raise MissingDependency("pycriu is not importable, and ckpt drives CRIU through it for bare processes",
                                hint="install CRIU's Python bindings (Debian: python3-pycriu) and use a "
                                     "Python that sees them (the .venv made by scripts/setup.sh does)") from None


def _client(pycriu: Any, images: Path, work: Path, options: CriuOptions, log_file: str,
            network_lock: str | None) -> tuple[Any, list[int]]:
    client = pycriu.criu()
    client.use_binary(criu_path())  # pycriu execs its argument as is: it must be a full path
    fds = [os.open(images, os.O_DIRECTORY | os.O_RDONLY), os.open(work, os.O_DIRECTORY | os.O_RDONLY)]
    opts = client.opts
    # CRIU opens /proc/<our pid>/fd/N itself, so the descriptors need not be inherited.
    opts.images_dir_fd, opts.work_dir_fd = fds
    opts.log_file, opts.log_level = log_file, LOG_LEVEL
    opts.tcp_established = options.tcp_established
    opts.file_locks = options.file_locks
    opts.ext_unix_sk = options.ext_unix_sk
    opts.shell_job = options.shell_job
    if network_lock == NFTABLES:  # else CRIU's default, iptables (config.network_lock)
        opts.network_lock = pycriu.rpc.NFTABLES
    return client, fds


def _failed(pycriu: Any, exc: Exception, what: str, log: Path, hint: str | None) -> CriuFailed:
    errno_ = getattr(exc, "errno", None)
    detail = os.strerror(errno_) if isinstance(errno_, int) and errno_ > 0 else str(exc)
    return criu_failed(f"CRIU could not {what}: {detail}", log=log, hint=hint)


def dump(pid: int, images: Path, work: Path, options: CriuOptions, *, network_lock: str | None = None) -> None:
    """Checkpoint the process tree rooted at `pid` into `images` (its log goes to `work`).
    `network_lock`: config.NFTABLES, or None for CRIU's default."""
    pycriu = _pycriu()
    if not Path(f"/proc/{pid}").exists():
        raise NotFound(f"no process with pid {pid}", hint="`ps -e` lists the processes")
    client, fds = _client(pycriu, images, work, options, DUMP_LOG, network_lock)
    client.opts.pid = pid
    client.opts.leave_running = options.leave_running
    try:
        client.dump()
    except pycriu.CRIUException as exc:
        raise _failed(pycriu, exc, f"dump process {pid}", work / DUMP_LOG,
                      "the process was left running; the CRIU log lines above say why") from None
    finally:
        for fd in fds:
            os.close(fd)


def restore(images: Path, work: Path, options: CriuOptions, *, network_lock: str | None = None) -> Restored:
    """Restore the tree in `images` as a sibling of CRIU, so it lives on without ckpt."""
    pycriu = _pycriu()
    client, fds = _client(pycriu, images, work, options.for_restore(), RESTORE_LOG, network_lock)
    client.opts.rst_sibling = True
    try:
        resp = client.restore()
    except pycriu.CRIUException as exc:
        raise _failed(pycriu, exc, "restore the process tree", work / RESTORE_LOG,
                      "a process with one of the checkpoint's pids may still be running") from None
    finally:
        for fd in fds:
            os.close(fd)
    return Restored(pid=int(resp.pid))


def available() -> bool:
    try:
        _pycriu()
    except MissingDependency:
        return False
    return True


__all__ = ["INSTALL_HINT", "Restored", "available", "dump", "restore"]
