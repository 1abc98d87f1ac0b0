"""Checkpoint archives on disk (PATH.tar, .tar.gz, .tar.zst): unpack one safely, or write one.

The compression is told from the first bytes, not the name: kubelet archives are plain tar
whatever they are called, Podman's default is zstd.
"""
from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import zstandard

from .. import atomic
from ..errors import NotFound
from ..format.read import unpack_stream
from ..oci import tarball
from .exportdir import POLICY

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def _decompressed(path: Path) -> Iterator[BinaryIO]:
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"no checkpoint archive at {path}") from None
    with raw:
        head = raw.read(4)
        raw.seek(0)
        if head.startswith(_ZSTD_MAGIC):
            yield zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[misc]
        elif head.startswith(_GZIP_MAGIC):
            yield gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[misc]
        else:
            yield raw


def unpack(path: Path, dest: Path) -> None:
    """Unpack the archive at `path` into the existing directory `dest` (files and directories only)."""
    with _decompressed(path) as stream:
        unpack_stream(stream, dest, POLICY, what=str(path))


def compression_for(path: Path) -> str:
    name = path.name
    if name.endswith((".tar.zst", ".tar.zstd")):
        return "zstd"
    if name.endswith((".tar.gz", ".tgz")):
        return "gzip"
    return "none"


def write(root: Path, path: Path, *, compression: str | None = None) -> int:
    """Write a tar of the directory `root` to `path` (atomically); returns its size in bytes."""
    compression = compression or compression_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The archive holds every memory page of the processes: only its owner may read it.
    with atomic.replace(path, mode=0o600) as out:
        if compression == "zstd":
            with zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(out, closefd=False) as zout:
                tarball.pack(root, zout)  # type: ignore[arg-type]
        elif compression == "gzip":
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gout:
                tarball.pack(root, gout)  # type: ignore[arg-type]
        else:
            tarball.pack(root, out)
    return path.stat().st_size
