"""The pages chunks of a checkpoint by place: which chunk holds a byte range of a pages file."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..errors import UsageError
from ..format import pages as pages_format
from ..oci import mediatypes as mt
from ..oci.model import Descriptor


@dataclass(frozen=True, slots=True)
class Chunk:
    pages_file: str
    offset: int
    length: int
    desc: Descriptor

    @property
    def end(self) -> int:
        return self.offset + self.length


class ChunkMap:
    """The chunks of every pages file; they must cover each file exactly once (CorruptData otherwise)."""

    def __init__(self, layers: list[Descriptor]) -> None:
        chunk_layers = [d for d in layers if d.media_type == pages_format.MEDIA_TYPE]
        others = {d.media_type for d in layers} - {pages_format.MEDIA_TYPE}
        if any(mt.is_encrypted(m) for m in others):
            raise UsageError("this checkpoint's memory is encrypted: it cannot be restored lazily yet",
                             hint="restore it without --lazy (with --decrypt-key)")
        if others:
            raise UsageError(f"memory stored as {sorted(others)} cannot be restored lazily",
                             hint="restore it without --lazy")
        self.sizes = pages_format.check_coverage(chunk_layers)  # validates every placement too
        by_file: dict[str, list[Chunk]] = {}
        for desc in chunk_layers:
            a = desc.annotations
            chunk = Chunk(a[pages_format.FILE_KEY], int(a[pages_format.OFFSET_KEY]), int(a[pages_format.LENGTH_KEY]),
                          desc)
            if chunk.length:
                by_file.setdefault(chunk.pages_file, []).append(chunk)
        self._chunks = {name: sorted(chunks, key=lambda c: c.offset) for name, chunks in by_file.items()}
        self._starts = {name: [c.offset for c in chunks] for name, chunks in self._chunks.items()}

    def files(self) -> list[str]:
        return sorted(self._chunks)

    def chunks(self, pages_file: str) -> list[Chunk]:
        return list(self._chunks.get(pages_file, ()))

    def covering(self, pages_file: str, offset: int, length: int) -> list[Chunk]:
        """The chunks that hold bytes [offset, offset + length) of `pages_file`, in order."""
        chunks, starts = self._chunks.get(pages_file, []), self._starts.get(pages_file, [])
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        out = []
        while i < len(chunks) and chunks[i].offset < offset + length:
            if chunks[i].end > offset:
                out.append(chunks[i])
            i += 1
        return out
