"""`ckpt fsck`: check the local store (and clear what crashed runs left behind), optionally repair."""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from ..oci.fsck import FsckReport
from ..oci.fsck import fsck as fsck_layout
from .home import Home, private_tmpfs_parent


def fsck(*, home: Home | None = None, repair: bool = False, full: bool = True) -> tuple[FsckReport, list[Path]]:
    """Check the store; with `repair`, drop untrustworthy tags, collect garbage and remove the work
    directories of runs that died. Returns the report and the leftover work dirs (removed if repairing)."""
    home = home or Home()
    report = fsck_layout(home.store(), repair=repair, full=full)
    # Only this user's own work-dir parent in /dev/shm: one another user made is neither walked
    # nor cleaned (private_tmpfs_parent refuses it, and our work dirs never went there).
    parents = [home.root / "tmp", private_tmpfs_parent(create=False)]
    leftovers = [d for parent in parents if parent is not None for d in _dirs(parent) if _abandoned(d)]
    if repair:
        for directory in leftovers:
            shutil.rmtree(directory, ignore_errors=True)
    return report, leftovers


def _dirs(parent: Path) -> list[Path]:
    try:
        with os.scandir(parent) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _abandoned(workdir: Path) -> bool:
    """A work dir is abandoned unless the run that made it still holds its lock."""
    lock = workdir / ".owner"
    try:
        # No link followed, and a FIFO planted as .owner cannot block the open.
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return True
    except OSError:  # a link or something else that is not a run's lock: not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
