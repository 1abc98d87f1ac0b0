"""An OCI image-layout directory (oci-layout, index.json, blobs/sha256), safe against crashes and races.

Blobs are written to `ingest/` and renamed into place once their digest is known; index.json is
replaced atomically under an exclusive lock, and only after every blob it names is present. So a
killed writer leaves at most unreferenced files, which `gc()` removes.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .. import atomic
from ..errors import CorruptData, NotFound
from . import annotations as ann
from . import mediatypes as mt
from .digest import VerifyingReader, hex_of, sha256_digest
from .model import Descriptor, Index, Manifest

LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
# index.json holds one ~350-byte entry per tag: the registries' 4 MiB limit for manifests
# would make a store of ~12,000 tags unreadable (and so impossible to clean up).
MAX_INDEX_FILE_BYTES = 256 << 20


class BlobWriter:
    """A file-like sink that hashes what it is given; `commit()` moves it into the layout."""

    def __init__(self, layout: Layout, known_digest: str | None = None) -> None:
        self._layout = layout
        self._known = known_digest  # the caller already hashed the bytes: do not hash them twice
        while True:
            fd, name = tempfile.mkstemp(dir=layout.root / "ingest", prefix="blob-")
            # Held while writing, so a concurrent gc() leaves this file alone. A gc() that came
            # between mkstemp and flock may have removed the file already: then take another.
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _same_file(fd, name):
                break
            os.close(fd)
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> int:
        self._file.write(data)
        if self._known is None:
            self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()

    def commit(self, media_type: str, annotations: dict[str, str] | None = None,
               expected: str | None = None) -> Descriptor:
        digest = self._known or "sha256:" + self._hash.hexdigest()
        if expected is not None and digest != expected:
            self.abort()
            raise CorruptData(f"blob digest mismatch: expected {expected}, got {digest}")
        self._file.flush()
        # No fsync here: a killed process loses nothing the page cache holds, and tag() makes the
        # blobs durable, all at once, before an index names them (per-blob fsyncs stall packing).
        # Moved while the lock is still held, so gc() cannot take the file between close and rename.
        os.replace(self._path, self._layout.blob_path(digest))
        self._done = True
        self._file.close()
        return Descriptor(media_type, digest, self.size, annotations or {})

    def abort(self) -> None:
        try:
            self._file.close()  # flushes what is buffered: on a full disk that fails, and must not
        except OSError:         # keep the half-written file from being removed
            pass
        if not self._done:  # after commit the name may belong to another writer's file
            self._done = True
            self._path.unlink(missing_ok=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_file(fd: int, name: str) -> bool:
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


class Layout:
    def __init__(self, root: Path, *, create: bool = False) -> None:
        self.root = Path(root)
        if create:
            self._create()
        elif not (self.root / "oci-layout").is_file():
            raise NotFound(f"{self.root} is not an OCI image layout (no oci-layout file)")

    def _create(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(exist_ok=True)
        if not (self.root / "oci-layout").exists():
            self._write_atomic("oci-layout", json.dumps(LAYOUT_FILE).encode())
        if not (self.root / "index.json").exists():
            self._write_atomic("index.json", Index(()).to_bytes())

    # -- blobs ---------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        try:
            raw: BinaryIO = open(self.blob_path(desc.digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest} is missing from {self.root}",
                           hint="run `ckpt fsck` or pull the checkpoint again") from None
        return VerifyingReader(raw, desc.digest, desc.size)

    def open_blob_unverified(self, desc: Descriptor) -> BinaryIO:
        """The raw blob file, for a consumer that checks the digest itself (a registry upload)."""
        try:
            return open(self.blob_path(desc.digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest} is missing from {self.root}",
                           hint="run `ckpt fsck` or pull the checkpoint again") from None

    def read_blob(self, desc: Descriptor) -> bytes:
        with self.open_blob(desc) as reader:
            return reader.read()

    def writer(self, known_digest: str | None = None) -> BlobWriter:
        (self.root / "ingest").mkdir(exist_ok=True)
        self._open_session()
        return BlobWriter(self, known_digest)

    def _open_session(self) -> None:
        """Announce, for as long as this process lives, that it writes blobs that no tag names yet:
        gc() keeps every blob written since a live session began (a `ckpt rm` racing a save)."""
        if getattr(self, "_session", None) is not None:
            return
        sessions = self.root / "sessions"
        sessions.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=sessions, prefix=f"{os.getpid()}-")
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._session = fd  # closed (and the lock dropped) when the process ends
        self._session_path = Path(name)

    def pin(self, digests: Iterable[str]) -> None:
        """Keep these blobs from gc() for as long as this process lives, whatever becomes of the tags
        that name them (a lazy restore reads its chunks after `ckpt rm` may have untagged them): a
        session of this process, and the blobs made as new as it, under the lock gc() takes."""
        with self.locked():
            self._open_session()
            for digest in digests:
                try:
                    os.utime(self.blob_path(digest))
                except FileNotFoundError:
                    pass  # the reader finds it missing and says so

    def _live_sessions_since(self) -> float | None:
        """The start time of the oldest live writing session of another process or Layout, if any."""
        oldest = None
        for path in _entries(self.root / "sessions"):
            if path == getattr(self, "_session_path", None):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # its writer is gone
            except BlockingIOError:
                started = os.fstat(fd).st_mtime
                oldest = started if oldest is None else min(oldest, started)
            finally:
                os.close(fd)
        return oldest

    @contextmanager
    def writing(self, known_digest: str | None = None) -> Iterator[BlobWriter]:
        """A BlobWriter that is removed again unless it was committed."""
        writer = self.writer(known_digest)
        try:
            yield writer
        finally:
            writer.abort()

    def put_bytes(self, data: bytes, media_type: str, annotations: dict[str, str] | None = None) -> Descriptor:
        digest = sha256_digest(data)
        if self.has_blob(digest):
            self._open_session()
            os.utime(self.blob_path(digest))  # reused: as new as this session, so gc() keeps it
        else:
            with self.writing(known_digest=digest) as w:
                w.write(data)
                w.commit(media_type, expected=digest)
        return Descriptor(media_type, digest, len(data), annotations or {})

    def put_manifest(self, manifest: Manifest) -> Descriptor:
        data = manifest.to_bytes()
        desc = manifest.descriptor()
        self.put_bytes(data, manifest.media_type)
        return desc

    def read_manifest(self, desc: Descriptor) -> Manifest:
        return Manifest.from_bytes(self.read_blob(desc))

    # -- index and tags ------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lockfile, fcntl.LOCK_UN)

    def index(self) -> Index:
        try:
            data = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            raise CorruptData(f"{self.root}/index.json is missing", hint="run `ckpt fsck --repair`") from None
        return Index.from_bytes(data, max_bytes=MAX_INDEX_FILE_BYTES)

    def refs(self) -> list[tuple[str, Descriptor]]:
        return [(d.annotations.get(ann.REF_NAME, ""), d) for d in self.index().manifests]

    def resolve(self, ref_name: str) -> Descriptor:
        for name, desc in self.refs():
            if name == ref_name:
                return desc
        raise NotFound(f"no checkpoint named {ref_name!r} in {self.root}", hint="`ckpt ls` lists them")

    def tag(self, ref_name: str, desc: Descriptor) -> None:
        """Point `ref_name` at the manifest (or index) `desc`, whose blobs must all be present already."""
        entry = desc.with_annotations({ann.REF_NAME: ref_name})
        with self.locked():
            # Checked under the lock gc() takes: until the tag is written nothing references these
            # blobs, so a gc() between a check outside the lock and the write could remove them.
            blobs = self._tree(desc, ref_name)
            for blob in blobs:
                _fsync_path(self.blob_path(blob.digest))
            _fsync_path(self.root / "blobs" / "sha256")
            kept = [d for d in self.index().manifests if d.annotations.get(ann.REF_NAME) != ref_name]
            self._write_index(Index((*kept, entry)))

    def _tree(self, desc: Descriptor, ref_name: str) -> list[Descriptor]:
        """`desc` (NotFound if it is not here) and every blob it names, through an index down to its
        manifests' blobs (all but the empty descriptor); CorruptData naming `ref_name` if one is missing."""
        out: list[Descriptor] = []
        todo = [desc]
        while todo:
            blob = todo.pop()
            if not self.has_blob(blob.digest):
                if blob is desc:
                    raise NotFound(f"refusing to tag {ref_name}: {desc.digest} is not in {self.root}")
                raise CorruptData(f"refusing to tag {ref_name}: blob {blob.digest} is missing")
            out.append(blob)
            if blob.media_type in mt.INDEX_TYPES:
                todo.extend(Index.from_bytes(self.read_blob(blob)).manifests)
            elif blob is desc or blob.media_type in mt.MANIFEST_TYPES:
                todo.extend(b for b in self.read_manifest(blob).blobs() if b.media_type != mt.OCI_EMPTY)
        return out

    def untag(self, ref_name: str) -> Descriptor:
        with self.locked():
            index = self.index()
            gone = [d for d in index.manifests if d.annotations.get(ann.REF_NAME) == ref_name]
            if not gone:
                raise NotFound(f"no checkpoint named {ref_name!r} in {self.root}")
            self._write_index(Index(tuple(d for d in index.manifests if d not in gone)))
        return gone[0]

    def _write_index(self, index: Index) -> None:
        self._write_atomic("index.json", json.dumps(index.to_json(), indent=2).encode())

    def _write_atomic(self, name: str, data: bytes) -> None:
        atomic.write_bytes(self.root / name, data)

    # -- maintenance ---------------------------------------------------------------------------

    def reachable(self) -> set[str]:
        """Digests of the blobs index.json reaches, through image indexes down to manifests' blobs."""
        keep: set[str] = set()
        todo = [desc for _, desc in self.refs()]
        visited: set[str] = set()
        while todo:
            desc = todo.pop()
            keep.add(desc.digest)
            if desc.digest in visited or not self.has_blob(desc.digest):
                continue
            visited.add(desc.digest)
            try:
                if desc.media_type in mt.INDEX_TYPES:
                    todo.extend(Index.from_bytes(self.read_blob(desc)).manifests)
                else:
                    keep.update(b.digest for b in self.read_manifest(desc).blobs())
            except CorruptData:
                continue
        return keep

    def gc(self) -> int:
        """Remove blobs no tag reaches and leftovers of interrupted writes; returns bytes freed."""
        freed = 0
        with self.locked():
            for path in self._garbage():
                freed += path.stat().st_size
                path.unlink()
            for path in _entries(self.root / "ingest"):  # absent in layouts other tools made
                freed += _remove_if_abandoned(path)
        return freed

    def _garbage(self) -> list[Path]:
        """Blobs no tag reaches, except those a live writing session may still tag."""
        keep = {hex_of(d) for d in self.reachable()}
        since = self._live_sessions_since()
        out = []
        for path in _entries(self.root / "blobs" / "sha256"):
            if path.name in keep:
                continue
            if since is not None and path.stat().st_mtime >= since - 1:
                continue
            out.append(path)
        return out

    def discard(self, digests: set[str]) -> int:
        """Remove those of `digests` that no tag reaches (plaintext left by an encryption, say)."""
        freed = 0
        with self.locked():
            for digest in digests - self.reachable():
                path = self.blob_path(digest)
                if path.exists():
                    freed += path.stat().st_size
                    path.unlink()
        return freed

    def garbage_bytes(self) -> int:
        """Bytes gc() would free now."""
        with self.locked():
            blobs = sum(p.stat().st_size for p in self._garbage())
        return blobs + sum(p.stat().st_size for p in _entries(self.root / "ingest"))

    def verify_blob(self, desc: Descriptor) -> None:
        with self.open_blob(desc) as reader:
            reader.drain()


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _remove_if_abandoned(path: Path) -> int:
    """Remove an ingest file unless a live writer still holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return 0
    try:
        size = os.fstat(fd).st_size
        path.unlink(missing_ok=True)
        return size
    finally:
        os.close(fd)
