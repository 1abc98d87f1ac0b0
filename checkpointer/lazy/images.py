"""The CRIU image directory of a lazy restore: every pages file at its full size, holding only the
pages `criu restore --lazy-pages` reads itself (those not marked lazy: stacks, file-backed private
pages, shared memory). The lazy pages stay holes; the page server hands them out."""
from __future__ import annotations

import os
from pathlib import Path

from .chunks import ChunkMap
from .memory import Memory
from .pagemap import PageIndex


def write_eager_pages(images: Path, index: PageIndex, chunk_map: ChunkMap, memory: Memory) -> int:
    """Create the pages files in `images` (a fresh directory holding the criu role); returns the
    bytes written. The chunks read for this stay cached only if they also hold lazy pages."""
    written = 0
    for name, size in chunk_map.sizes.items():
        fd = os.open(images / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
            for offset, length in index.eager.get(name, ()):
                pos = offset
                for piece in memory.read(name, offset, length):
                    while piece:
                        n = os.pwrite(fd, piece, pos)
                        pos, piece = pos + n, piece[n:]
                written += length
        finally:
            os.close(fd)
    memory.release_unneeded()
    return written
