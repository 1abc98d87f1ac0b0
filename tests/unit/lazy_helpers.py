"""Synthetic CRIU image directories and checkpoints for the lazy restore unit tests: pagemap
images encoded here (the protobuf wire format by hand), pages files of seeded random bytes, packed
into an OCI layout by ckpt's own writer."""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

from checkpointer.format import pages as pages_format
from checkpointer.lazy.protocol import PAGE_SIZE, PE_LAZY, PE_PRESENT
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor

_IMG_COMMON, _PAGEMAP_MAGIC = 0x54564319, 0x56084025
LAZY, EAGER = PE_PRESENT | PE_LAZY, PE_PRESENT


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(fields: list[tuple[int, int]]) -> bytes:
    body = b"".join(_varint(number << 3) + _varint(value) for number, value in fields)
    return struct.pack("<I", len(body)) + body


def pagemap_image(pages_id: int, entries: list[tuple[int, int, int]]) -> bytes:
    """A pagemap image as CRIU 4.2 writes it: (vaddr, nr_pages, flags) entries."""
    out = struct.pack("<II", _IMG_COMMON, _PAGEMAP_MAGIC) + _message([(1, pages_id)])
    for vaddr, nr_pages, flags in entries:
        out += _message([(1, vaddr), (2, 0), (4, flags), (5, nr_pages)])
    return out


@dataclass
class Synthetic:
    images: Path
    layout: Layout
    chunks: list[Descriptor]
    memory: dict[int, bytes]  # pid -> the bytes of its pages file
    entries: dict[int, list[tuple[int, int, int]]]

    def page_bytes(self, pid: int, vaddr: int, nr_pages: int) -> bytes:
        """What the process had at `vaddr` (from its entries, in file order)."""
        offset = 0
        for start, count, flags in self.entries[pid]:
            if not flags & PE_PRESENT:
                continue
            if start <= vaddr < start + count * PAGE_SIZE:
                pos = offset + vaddr - start
                return self.memory[pid][pos:pos + nr_pages * PAGE_SIZE]
            offset += count * PAGE_SIZE
        raise KeyError(hex(vaddr))


def make_checkpoint(root: Path, tasks: dict[int, list[tuple[int, int, int]]], *, seed: int = 1,
                    chunk_size: int = 1 << 20, zero_fraction: float = 0.3) -> Synthetic:
    """`tasks`: pid -> its pagemap entries. Each pid gets pages-<pid>.img with bytes for its
    present pages (some pages all zero), packed as chunks of about `chunk_size`."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True)
    memory = {}
    for pid, entries in tasks.items():
        (images / f"pagemap-{pid}.img").write_bytes(pagemap_image(pid, entries))
        pages = sum(n for _, n, f in entries if f & PE_PRESENT)
        data = b"".join(bytes(PAGE_SIZE) if rng.random() < zero_fraction else rng.randbytes(PAGE_SIZE)
                        for _ in range(pages))
        (images / f"pages-{pid}.img").write_bytes(data)
        memory[pid] = data
    layout = Layout(root / "layout", create=True)
    names = sorted(p.name for p in images.glob("pages-*.img"))
    chunks = pages_format.write_pages(layout, images, names, chunk_size=chunk_size)
    return Synthetic(images, layout, chunks, memory, tasks)


def criu_dir(syn: Synthetic, dest: Path) -> Path:
    """An image directory as a lazy restore starts from: the pagemaps, no pages files."""
    dest.mkdir()
    for path in syn.images.glob("pagemap-*.img"):
        (dest / path.name).write_bytes(path.read_bytes())
    return dest
