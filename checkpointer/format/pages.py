"""Memory pages as content-addressed chunks: each pages-N.img file is cut where the virtual address
of the page is a multiple of the chunk size (and at memory-region starts), each chunk one zstd
blob. Chunks compress and upload in parallel and unpack in parallel straight to their offset.
Because cuts follow addresses, not file offsets, a chunk whose memory did not change keeps its
digest even when other regions grew or shrank, so a repeat checkpoint uploads only what changed.
"""
from __future__ import annotations

import itertools
import mmap
import os
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..errors import CorruptData
from ..oci import annotations as ann
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress, Update, noop
from . import roles
from .source import BlobSource

MEDIA_TYPE = "application/vnd.ckpt.pages.chunk.v1+zstd"
FILE_KEY = ann.CKPT_PREFIX + "pages.file"
OFFSET_KEY = ann.CKPT_PREFIX + "pages.offset"
LENGTH_KEY = ann.CKPT_PREFIX + "pages.length"

CHUNK_SIZE = 8 << 20  # grown for huge dumps so a manifest keeps under MAX_CHUNKS entries
MIN_CHUNK = 1 << 20  # small regions are merged up to this size: fewer, fuller blobs
MAX_CHUNKS = 8192  # about 2 MiB of manifest
ZSTD_LEVEL = 1  # fastest end to end on CRIU pages: ratio within a few % of level 3
MAX_FILE_BYTES = 1 << 42
MAX_CHUNK_BYTES = 256 << 20  # a chunk is decompressed in memory: refuse to be told it is larger
_NAME = re.compile(r"^pages-[0-9]+\.img$")


def workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass(frozen=True, slots=True)
class _Chunk:
    name: str
    offset: int
    length: int


def chunk_size_for(total: int, base: int = CHUNK_SIZE) -> int:
    size = base
    while total // size >= MAX_CHUNKS:
        size *= 2
    return size


def _regions(images: Path) -> dict[str, list[tuple[int, int]]]:
    """pages file name -> [(vaddr, bytes)] of the memory it holds, in file order (from pagemaps)."""
    from ..criu.images import PAGE_SIZE, read_pagemap

    out: dict[str, list[tuple[int, int]]] = {}
    for pagemap in sorted(images.glob("pagemap-*.img")):
        header, regions = read_pagemap(pagemap)
        merged: list[tuple[int, int]] = []
        for vaddr, pages in regions:  # CRIU splits runs of pages at its pipe size: join them again
            if merged and merged[-1][0] + merged[-1][1] == vaddr:
                merged[-1] = (merged[-1][0], merged[-1][1] + pages * PAGE_SIZE)
            else:
                merged.append((vaddr, pages * PAGE_SIZE))
        out[f"pages-{header}.img"] = merged
    return out


def cut_points(size: int, regions: list[tuple[int, int]] | None, chunk_size: int) -> list[int]:
    """Offsets where a pages file of `size` bytes is cut: at region starts and at every
    chunk-aligned virtual address. Pieces under MIN_CHUNK merge into the next, except that a large
    region always starts a chunk of its own: the small, busy regions before it (stack, heap,
    counters) must not drag a piece of it into a chunk that changes on every checkpoint."""
    cuts, fixed = set(), {0, size}
    if regions and sum(n for _, n in regions) == size:
        offset = 0
        for vaddr, length in regions:
            cuts.add(offset)
            if length >= MIN_CHUNK:
                fixed.add(offset)
            first = -(-vaddr // chunk_size) * chunk_size
            cuts.update(offset + b - vaddr for b in range(first, vaddr + length, chunk_size) if b > vaddr)
            offset += length
    else:  # no usable pagemap: fixed offsets
        cuts.update(range(0, size, chunk_size))
    kept = [0]
    for cut in sorted(cuts | fixed):
        if cut <= kept[-1]:
            continue
        if cut in fixed and cut - kept[-1] < MIN_CHUNK and len(kept) > 1 and kept[-1] not in fixed:
            kept.pop()  # a short piece before a fixed cut joins the piece before it
        if cut in fixed or cut - kept[-1] >= MIN_CHUNK:
            kept.append(cut)
    return kept


def _chunks(images: Path, names: list[str], chunk_size: int | None) -> list[_Chunk]:
    try:
        regions = _regions(images)
    except Exception:  # any trouble reading pagemaps only costs deduplication
        regions = {}
    sizes = {name: (images / name).stat().st_size for name in names}
    size = chunk_size or chunk_size_for(sum(sizes.values()))
    out = []
    for name in names:
        cuts = cut_points(sizes[name], regions.get(name), size)
        out += [_Chunk(name, a, b - a) for a, b in itertools.pairwise(cuts)] or [_Chunk(name, 0, 0)]
    return out


class _Progress:
    """Thread-safe byte counter that reports to `on_progress`."""

    def __init__(self, phase: str, total: int, on_progress: OnProgress) -> None:
        self._phase, self._total, self._report = phase, total, on_progress
        self._done = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self._done += n
            self._report(Update(self._phase, self._done, self._total))


def _compress_from_file(path: Path, chunk: _Chunk, compressor: zstandard.ZstdCompressor) -> bytes:
    """Compress one chunk of a pages file. The file is mapped, not read: a copy of every byte of
    memory into Python first cost as much CPU as compressing it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size < chunk.offset + chunk.length:
            raise CorruptData(f"{chunk.name} shrank while it was being packed")
        if chunk.length == 0:
            return compressor.compress(b"")
        skew = chunk.offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(fd, chunk.length + skew, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                       offset=chunk.offset - skew) as mapped, memoryview(mapped) as view, \
                view[skew:] as piece:
            return compressor.compress(piece)
    finally:
        os.close(fd)


def write_pages(layout: Layout, images: Path, names: list[str], *, chunk_size: int | None = None,
                on_progress: OnProgress = noop, on_blob: Callable[[Descriptor, bytes], None] | None = None
                ) -> list[Descriptor]:
    """Store the pages files `names` of `images` as chunk blobs; returns their descriptors in order.
    `on_blob` is called (from a worker thread) with each chunk and its bytes as it is stored."""
    chunks = _chunks(images, names, chunk_size)
    progress = _Progress("pack pages", sum(c.length for c in chunks), on_progress)
    local = threading.local()

    def store(chunk: _Chunk) -> Descriptor:
        if not hasattr(local, "compressor"):
            local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        packed = _compress_from_file(images / chunk.name, chunk, local.compressor)
        desc = layout.put_bytes(packed, MEDIA_TYPE, {ann.LAYER_ROLE: roles.PAGES, FILE_KEY: chunk.name,
                                                    OFFSET_KEY: str(chunk.offset), LENGTH_KEY: str(chunk.length)})
        progress.add(chunk.length)
        if on_blob:
            on_blob(desc, packed)
        return desc

    with ThreadPoolExecutor(workers(), thread_name_prefix="pack-pages") as pool:
        return list(pool.map(store, chunks))


def _placement(desc: Descriptor) -> _Chunk:
    try:
        chunk = _Chunk(desc.annotations[FILE_KEY], int(desc.annotations[OFFSET_KEY]),
                       int(desc.annotations[LENGTH_KEY]))
    except (KeyError, ValueError):
        raise CorruptData(f"pages chunk {desc.digest} lacks its file, offset or length annotation") from None
    if not _NAME.match(chunk.name) or chunk.offset < 0 or not 0 <= chunk.length <= MAX_CHUNK_BYTES \
            or chunk.offset + chunk.length > MAX_FILE_BYTES:
        raise CorruptData(f"pages chunk {desc.digest} has an invalid placement {chunk}")
    return chunk


def check_coverage(layers: list[Descriptor]) -> dict[str, int]:
    """Each pages file must be covered by its chunks exactly once, from 0 on; returns file sizes."""
    by_file: dict[str, list[_Chunk]] = {}
    for desc in layers:
        chunk = _placement(desc)
        by_file.setdefault(chunk.name, []).append(chunk)
    sizes = {}
    for name, chunks in by_file.items():
        end = 0
        for chunk in sorted(chunks, key=lambda c: c.offset):
            if chunk.offset != end:
                raise CorruptData(f"pages chunks of {name} overlap or leave a gap at offset {end}")
            end += chunk.length
        sizes[name] = end
    return sizes


def check_placed(layers: list[Descriptor], images: Path) -> None:
    """After chunks were placed piecemeal (unpack_pages with complete=False): the chunks must cover
    each file exactly, and each file must have exactly that size."""
    for name, size in check_coverage(layers).items():
        try:
            actual = os.lstat(images / name).st_size
        except FileNotFoundError:
            actual = -1
        if actual != size:
            raise CorruptData(f"{name} came out {actual} bytes long, not {size}")


def unpack_pages(layout: BlobSource, layers: list[Descriptor], images: Path, *, complete: bool = True,
                 on_progress: OnProgress = noop, verified: Mapping[str, bytes] | None = None) -> None:
    """Write every chunk to its place in its pages file, in parallel; each blob is verified first.
    `complete` says `layers` are all the chunks, which must then cover each file exactly.
    `verified` holds blobs this process has just checked against their digests (a pull that kept
    them in memory), by digest: they are used as they are instead of being read and hashed again.
    The files must be new (`images` is a fresh work directory): what no chunk writes reads as zeros."""
    if complete:
        sizes = check_coverage(layers)
    else:
        sizes = {}
        for chunk in map(_placement, layers):
            sizes[chunk.name] = max(sizes.get(chunk.name, 0), chunk.offset + chunk.length)
    fds = {}
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_EXCL if complete else 0)
    try:
        for name, size in sizes.items():
            fds[name] = os.open(images / name, flags, 0o600)
            if complete:  # partial calls may run side by side on one file: pwrite alone extends it
                os.ftruncate(fds[name], size)
        progress = _Progress("unpack pages", sum(sizes.values()), on_progress)
        local = threading.local()

        def place(desc: Descriptor) -> None:
            if not hasattr(local, "decompressor"):
                local.decompressor, local.buffer = zstandard.ZstdDecompressor(), bytearray(PIECE)
            chunk = _placement(desc)
            packed = verified.get(desc.digest) if verified else None
            if packed is None:
                packed = layout.read_blob(desc)  # digest and size checked before a byte is used
            _write_chunk(fds[chunk.name], chunk, packed, desc.digest, local.decompressor, local.buffer)
            progress.add(chunk.length)

        with ThreadPoolExecutor(workers(), thread_name_prefix="unpack-pages") as pool:
            list(pool.map(place, layers))
    finally:
        for fd in fds.values():
            os.close(fd)


PIECE = 1 << 20
_ZEROS = bytes(PIECE)


def _write_chunk(fd: int, chunk: _Chunk, packed: bytes, digest: str, decompressor: zstandard.ZstdDecompressor,
                 buffer: bytearray) -> None:
    """Decompress one chunk to its offset, a piece at a time through `buffer` (never more than a
    piece in memory, whatever the blob claims). A piece of zeros is not written: in a new file it
    reads back as zeros anyway (a hole), and dumps are often half zero pages, whose copying and
    memory this saves."""
    view = memoryview(buffer)
    pos, end, skipped = chunk.offset, chunk.offset + chunk.length, False
    try:
        with decompressor.stream_reader(packed, read_size=PIECE, read_across_frames=True) as reader:
            while n := reader.readinto(buffer):
                if pos + n > end:
                    raise CorruptData(f"pages chunk {digest} holds more than its {chunk.length} bytes")
                skipped = n == PIECE and buffer == _ZEROS
                if not skipped:
                    written = 0
                    while written < n:
                        written += os.pwrite(fd, view[written:n], pos + written)
                pos += n
    except zstandard.ZstdError as exc:
        raise CorruptData(f"pages chunk {digest} is not valid zstd: {exc}") from None
    finally:
        view.release()
    if pos != end:
        raise CorruptData(f"pages chunk {digest} holds {pos - chunk.offset} bytes, not {chunk.length}")
    if skipped:  # the file must still reach the chunk's end
        os.pwrite(fd, b"\0", end - 1)
