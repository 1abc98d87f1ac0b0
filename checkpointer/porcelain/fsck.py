"""`ckpt fsck`: check the local store (and clear what crashed runs left behind), optionally repair."""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from ..oci.fsck import FsckReport, fsck as fsck_layout
from .home import TMPFS, Home


def fsck(*, home: Home | None = None, repair: bool = False, full: bool = True) -> tuple[FsckReport, list[Path]]:
    """Check the store; with `repair`, drop untrustworthy tags, collect garbage and remove the work
    directories of runs that died. Returns the report and the leftover work dirs (removed if repairing)."""
    home = home or Home()
    report = fsck_layout(home.store(), repair=repair, full=full)
    leftovers = [d for parent in (home.root / "tmp", TMPFS / "ckpt") for d in _dirs(parent) if _abandoned(d)]
    if repair:
        for directory in leftovers:
            shutil.rmtree(directory, ignore_errors=True)
    return report, leftovers


def _dirs(parent: Path) -> list[Path]:
    try:
        return [p for p in parent.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _abandoned(workdir: Path) -> bool:
    """A work dir is abandoned unless the run that made it still holds its lock."""
    lock = workdir / ".owner"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
