"""`ckpt fsck`: check the local store and the blob cache (and clear what crashed runs left behind),
optionally repair. Lazy restores whose page supervisor still runs are left alone; the directories
of those whose supervisor is gone (every page in, failed, or killed) are leftovers."""
from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..oci.fsck import Finding, FsckReport
from ..oci.fsck import fsck as fsck_layout
from .cache import CacheReport, check_cache
from .deliveries import list_deliveries, remove_finished
from .home import Home, private_tmpfs_parent


def fsck(*, home: Home | None = None, repair: bool = False, full: bool = True) -> tuple[FsckReport, list[Path]]:
    """Check the store and the cache; with `repair`, drop untrustworthy tags and damaged cached blobs,
    collect garbage, trim the cache to its limit and remove the work directories of runs that died
    (and of lazy restores whose supervisor is gone). Returns the report (the cache's problems among
    its findings) and the leftover work dirs (removed if repairing)."""
    home = home or Home()
    report = fsck_layout(home.store(), repair=repair, full=full)
    report = _with_cache(report, check_cache(home, repair=repair))
    # Only this user's own work-dir parent in /dev/shm: one another user made is neither walked
    # nor cleaned (private_tmpfs_parent refuses it, and our work dirs never went there).
    parents = [home.root / "tmp", private_tmpfs_parent(create=False)]
    leftovers = [d for parent in parents if parent is not None for d in _dirs(parent) if _abandoned(d)]
    finished = [view.work for view in list_deliveries(home) if not view.alive]
    if repair:
        for directory in leftovers:
            shutil.rmtree(directory, ignore_errors=True)
        remove_finished(home)
    return report, leftovers + finished


def _with_cache(report: FsckReport, cache: CacheReport | None) -> FsckReport:
    if cache is None:
        return report
    findings = tuple(Finding(f"cache {digest}", problem) for digest, problem in cache.problems)
    return replace(report, blobs_checked=report.blobs_checked + cache.checked, findings=report.findings + findings,
                   freed=report.freed + cache.removed_bytes)


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
