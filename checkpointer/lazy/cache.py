"""The node-local blob cache ($CKPT_HOME/cache): every blob a restore or an inspect fetched from a
registry, kept by its digest so that the next restore of the same checkpoint (or of one that shares
memory with it) fetches nothing but the manifest.

It is an OCI layout's blob store (blobs/sha256/, ingest/), written the way oci/layout.py writes:
into ingest/ under a shared flock, renamed into place once the digest matched, so concurrent ckpt
processes (and page supervisors) can fill it at once and a reader never sees half a blob. Every
read verifies the digest, and marks the blob used (its mtime): eviction goes by least recent use.

Eviction (`trim`) runs under the layout's exclusive lock, so two never race, and spares every blob
used in the last RECENT seconds: a restore in progress is using those (the cache may then exceed
its limit for a while). A blob evicted under a reader that was about to open it is simply fetched
again. Blobs are hard-linked between the cache and the local store (the same filesystem, both
under $CKPT_HOME): a blob both hold takes its space once.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptData, NotFound
from ..oci.digest import hex_of
from ..oci.layout import BlobWriter, Layout
from ..oci.model import Descriptor

RECENT = 600.0  # seconds: a blob used this recently is never evicted
_SHA256 = "sha256:"


@dataclass(frozen=True, slots=True)
class CacheUsage:
    blobs: int
    bytes: int
    limit: int


@dataclass(frozen=True, slots=True)
class CacheReport:
    """What `check` found: blobs whose bytes are not their digest (removed when repairing), and
    leftovers of interrupted writes (removed when repairing)."""

    checked: int = 0
    damaged: tuple[str, ...] = ()
    leftovers: tuple[str, ...] = ()
    removed_bytes: int = 0
    problems: tuple[tuple[str, str], ...] = field(default=())  # (digest, what is wrong)


class ChunkCache:
    """The cache at `root`, holding at most `limit` bytes (but what RECENT protects); 0 disables it:
    nothing is kept, nothing read."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit = Path(root), limit
        self.layout = Layout(self.root, create=True)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    # -- reading ---------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        return self.layout.blob_path(digest)

    def has_blob(self, digest: str) -> bool:
        return self.enabled and self.layout.has_blob(digest)

    def read_blob(self, desc: Descriptor) -> bytes:
        """The blob's bytes, verified (CorruptData if they are not what the digest says, NotFound
        if it is not here, or was evicted meanwhile); marks it used."""
        if not self.enabled:
            raise NotFound(f"blob {desc.digest} is not in the cache (it is off)")
        self.touch(desc.digest)
        return self.layout.read_blob(desc)

    def touch(self, digest: str) -> None:
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            pass

    # -- writing ---------------------------------------------------------------------------------

    @contextmanager
    def writing(self, known_digest: str | None = None) -> Iterator[BlobWriter]:
        """A writer into the cache (oci/layout.py's BlobWriter: into ingest/, renamed into place by
        `commit(media_type, expected=digest)` once the digest matched), removed unless committed."""
        writer = BlobWriter(self.layout, known_digest)
        try:
            yield writer
        finally:
            writer.abort()

    def adopt(self, blob: Path, digest: str) -> bool:
        """Take the verified blob file `blob` (of the local store) in, by a hard link; whether the
        cache has it now."""
        if not self.enabled:
            return False
        target = self.path(digest)
        try:
            os.link(blob, target)
        except FileExistsError:
            self.touch(digest)
            return True
        except OSError:  # another filesystem, a full disk: the blob is simply not cached
            return False
        return True

    def lend(self, digest: str, layout: Layout) -> bool:
        """Hard-link the cached blob `digest` into `layout` (the local store) unless it is there;
        whether `layout` has it now. The caller must hold a writing session of `layout` (its gc
        then keeps the blob, which is marked used now)."""
        if layout.has_blob(digest):
            return True
        if not self.has_blob(digest):
            return False
        try:
            os.link(self.path(digest), layout.blob_path(digest))
        except FileExistsError:
            pass
        except OSError:
            return False
        self.touch(digest)  # the same file: new to the store's gc, and recently used here
        return True

    # -- housekeeping ------------------------------------------------------------------------------

    def usage(self) -> CacheUsage:
        blobs = _blob_files(self.layout)
        return CacheUsage(len(blobs), sum(size for _, size, _ in blobs), self.limit)

    def trim(self, *, now: float | None = None) -> int:
        """Evict the least recently used blobs until the cache holds no more than its limit, but
        never one used in the last RECENT seconds; returns the bytes freed."""
        now = time.time() if now is None else now
        freed = 0
        with self.layout.locked():
            blobs = _blob_files(self.layout)
            total = sum(size for _, size, _ in blobs)
            for path, size, used in sorted(blobs, key=lambda b: b[2]):
                if total <= self.limit:
                    break
                if now - used < RECENT:
                    break  # sorted by use: every later one is more recent still
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                total -= size
                freed += size
        return freed

    def check(self, *, repair: bool = False) -> CacheReport:
        """Verify every blob against its name; with `repair`, remove the damaged ones and the
        leftovers of interrupted writes (an ingest file no live writer holds)."""
        damaged: list[str] = []
        leftovers: list[str] = []
        problems: list[tuple[str, str]] = []
        removed = 0
        blobs = _blob_files(self.layout)
        for path, size, _ in blobs:
            desc = Descriptor("application/octet-stream", _SHA256 + path.name, size)
            try:
                self.layout.verify_blob(desc)
            except (CorruptData, NotFound) as exc:
                if isinstance(exc, NotFound) and not path.exists():
                    continue  # evicted while this looked (a supervisor's trim): gone, not damaged
                damaged.append(desc.digest)
                problems.append((desc.digest, str(exc)))
                if repair:
                    path.unlink(missing_ok=True)
                    removed += size
            except OSError as exc:
                problems.append((desc.digest, exc.strerror or str(exc)))
        for path in _files(self.root / "ingest"):
            left = _abandoned_size(path, remove=repair)
            if left is not None:
                leftovers.append(path.name)
                removed += left if repair else 0
        return CacheReport(len(blobs), tuple(damaged), tuple(leftovers), removed, tuple(problems))


def _files(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []


def _blob_files(layout: Layout) -> list[tuple[Path, int, float]]:
    """(path, size, last use) of every blob named by a valid sha256 digest."""
    out = []
    for path in _files(layout.root / "blobs" / "sha256"):
        try:
            hex_of(_SHA256 + path.name)
            st = path.stat()
        except (CorruptData, FileNotFoundError):
            continue
        out.append((path, st.st_size, st.st_mtime))
    return out


def _abandoned_size(path: Path, *, remove: bool) -> int | None:
    """The size of an ingest file no live writer holds (removed if `remove`), or None if one does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return None if exc.errno in (errno.ENOENT, errno.ELOOP) else 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    else:
        size = os.fstat(fd).st_size
        if remove:
            path.unlink(missing_ok=True)
        return size
    finally:
        os.close(fd)
