"""Where ckpt keeps its local store, work directories and restored bundles ($CKPT_HOME)."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ..errors import UsageError, disk_error
from ..oci.layout import Layout

log = logging.getLogger(__name__)

TMPFS = Path("/dev/shm")
# A container id that is one plain path component (what runc takes, less "." and ".." and odd signs).
CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,253}")
_TMPFS_MARGIN = 512 << 20


def tmpfs_parent() -> Path:
    """Where this user's work dirs in memory go: TMPFS/ckpt for root, TMPFS/ckpt-UID for others."""
    uid = os.geteuid()
    return TMPFS / ("ckpt" if uid == 0 else f"ckpt-{uid}")


def _fast_scratch(size_hint: int) -> Path | None:
    if size_hint <= 0 or os.environ.get("CKPT_NO_TMPFS"):
        return None
    try:
        st = os.statvfs(TMPFS)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return private_tmpfs_parent() if free >= size_hint + size_hint // 4 + _TMPFS_MARGIN else None


def private_tmpfs_parent(*, create: bool = True) -> Path | None:
    """tmpfs_parent(), made if missing (and `create`), or None (then work dirs go to disk, and
    `ckpt fsck` does not look there) unless it is ours alone: a directory, not a link, owned by
    this user, that nobody else can write to.

    The work dirs hold every memory page of the dumped processes. /dev/shm is writable by every
    user, so anyone could make TMPFS/ckpt first (or a link by that name) and read root's images,
    or plant entries there. Once checked, the name stays ours: the sticky bit of /dev/shm lets
    nobody but its owner (and root) rename or remove it."""
    path = tmpfs_parent()
    uid = os.geteuid()
    try:
        top = os.stat(TMPFS)
        if top.st_mode & 0o002 and not top.st_mode & stat.S_ISVTX:
            log.warning("%s is writable by everyone and not sticky: work dirs go to disk instead", TMPFS)
            return None
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            log.warning("%s is not a directory (a link?): not used for work dirs, which go to disk instead; "
                        "remove it", path)
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != uid or st.st_mode & 0o022:
            log.warning("%s belongs to uid %d with mode %o, not to uid %d alone: not used for work dirs (they hold "
                        "memory images), which go to disk instead; remove it", path, st.st_uid,
                        stat.S_IMODE(st.st_mode), uid)
            return None
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # made by an earlier release with the umask's mode; only we could write in it
    except OSError:
        return None
    finally:
        os.close(fd)
    return path


def default_home() -> Path:
    if env := os.environ.get("CKPT_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/ckpt")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ckpt"


class Home:
    """$CKPT_HOME: store/ (an OCI image layout), tmp/ (work dirs), containers/ (restored bundles)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_home()

    @property
    def store_path(self) -> Path:
        return self.root / "store"

    def ensure_root(self) -> Path:
        """The home directory, made owner-only if it is not there yet (whatever command comes
        first): it will hold memory images, bundles and a lazy restore's pages."""
        if not self.root.exists():
            self.root.mkdir(mode=0o700, parents=True)
        return self.root

    def store(self) -> Layout:
        self.ensure_root()
        return Layout(self.store_path, create=True)

    def rescue_path(self, name: str, suffix: str = "") -> Path:
        """Where to keep what a failed save could not put back: $CKPT_HOME/rescue/NAME-TIME."""
        path = self.ensure_root() / "rescue" / f"{name}-{datetime.now():%Y%m%dT%H%M%S}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def bundle_path(self, name: str) -> Path:
        """The bundle of container `name`, which comes from a --name or from a checkpoint (which
        may be hostile): a name that is no single plain path component is refused, as runc refuses
        it, before anything is made or removed there."""
        if not CONTAINER_ID.fullmatch(name):
            raise UsageError(f"{name!r} is not a container id ckpt restores under: letters, digits, '_', '.', '-', "
                             "beginning with a letter or digit",
                             hint="restore it under another name with --name ID")
        return self.root / "containers" / name

    @contextmanager
    def workdir(self, prefix: str, size_hint: int = 0) -> Iterator[Path]:
        """A scratch directory, removed afterwards whatever happens. CRIU images of `size_hint`
        bytes go to memory (tmpfs) when it has room for them: dumping to and restoring from
        page-cache-backed disk is measurably slower, and the bytes are read back at once."""
        parent = _fast_scratch(size_hint)
        if parent is None:
            parent = self.ensure_root() / "tmp"
            parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        # Held for the run's lifetime: `ckpt fsck` removes only work dirs whose lock is free.
        owner = os.open(path / ".owner", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(owner, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            os.close(owner)

    def packing_layout(self, work: Path, size_hint: int) -> Layout:
        """Where a checkpoint that leaves this host at once (for a registry, a layout, an archive) is
        packed: beside its CRIU images in memory when there is room, so its bytes never touch the
        disk; else the store, as for a local save."""
        if work.is_relative_to(tmpfs_parent()) and _fast_scratch(size_hint):
            return Layout(work / "packed", create=True)
        return self.store()


@contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """Turn an OSError of the local disk into a StorageError that says what was being done."""
    try:
        yield
    except OSError as exc:
        raise disk_error(what, exc) from exc
