"""Read a CRIU image directory: the process tree, commands and dumped memory (decoded here: a few
fields of a few images; pycriu for the rest)."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptData, MissingDependency

PAGE_SIZE = 4096


def pycriu_images() -> Any:
    """pycriu.images (CRIU's image codecs), or MissingDependency saying how to get it."""
    try:
        import pycriu.images  # an optional system package, imported only when needed
    except ImportError:
        raise MissingDependency("pycriu is not importable",
                                hint="install CRIU's Python bindings (Debian: python3-pycriu) "
                                     "and use a Python that sees them") from None
    return pycriu.images


_images = pycriu_images  # its earlier name


def load(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            image: dict[str, Any] = pycriu_images().load(f)
            return image
    except MissingDependency:
        raise
    except FileNotFoundError:
        raise CorruptData(f"CRIU image {path.name} is missing") from None
    except Exception as exc:  # pycriu raises bare Exceptions for bad magic and protobuf errors
        raise CorruptData(f"CRIU image {path.name} cannot be decoded: {exc}") from None


@dataclass(frozen=True, slots=True)
class Process:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    threads: int
    memory: int  # bytes of memory pages in the checkpoint


def process_tree(images: Path) -> list[Process]:
    """The processes of a checkpoint, from its pstree, core and mm images (decoded here: importing
    pycriu's protobuf modules would cost `ckpt inspect` more than the rest of its work)."""
    out = []
    for pid, ppid, threads in pstree_entries(images):
        comm = task_comm(images, pid)
        out.append(Process(pid=pid, ppid=ppid, comm=comm, cmdline=_cmdline(images, pid) or comm, threads=threads,
                           memory=dumped_memory(images, pid)))
    return out


def pstree_entries(images: Path) -> list[tuple[int, int, int]]:
    """(pid, ppid, number of threads) of every process, from pstree.img (pstree_entry {1: pid,
    2: ppid, 3: pgid, 4: sid, 5: threads (repeated)})."""
    out = []
    for data, start, end, name in _entries(images / "pstree.img", PSTREE_MAGIC):
        fields = _fields(data, start, end, name)
        pid = _last(fields, 1)
        if not isinstance(pid, int):
            raise CorruptData(f"CRIU image {name} has a process without its pid")
        ppid = _last(fields, 2)
        threads = 0
        for number, value in fields:
            if number == 5:
                threads += len(_packed(data, value, name)) if isinstance(value, tuple) else 1
        out.append((pid, ppid if isinstance(ppid, int) else 0, threads))
    return out


def task_comm(images: Path, pid: int) -> str:
    """The command name of process `pid` (core_entry {3: tc}, task_core_entry {6: comm})."""
    for data, start, end, name in _entries(images / f"core-{pid}.img", CORE_MAGIC):
        tc = _last(_fields(data, start, end, name), 3)
        if isinstance(tc, tuple):
            comm = _last(_fields(data, *tc, name), 6)
            if isinstance(comm, tuple):
                return data[comm[0]:comm[1]].decode(errors="replace")
        return ""
    return ""


def _entries(path: Path, magic: int) -> Iterator[tuple[bytes, int, int, str]]:
    """(data, start, end, image name) of each message of a CRIU image: a u32 length, the message."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptData(f"CRIU image {path.name} is missing") from None
    if len(data) < 8 or struct.unpack_from("<I", data)[0] not in (IMG_COMMON, IMG_SERVICE) \
            or struct.unpack_from("<I", data, 4)[0] != magic:
        raise CorruptData(f"CRIU image {path.name} is not what its name says")
    pos = 8
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptData(f"CRIU image {path.name} ends inside an entry")
        (size,) = struct.unpack_from("<I", data, pos)
        end = pos + 4 + size
        if end > len(data):
            raise CorruptData(f"CRIU image {path.name} ends inside an entry")
        yield data, pos + 4, end, path.name
        pos = end


def _fields(data: bytes, pos: int, end: int, name: str) -> list[tuple[int, int | tuple[int, int]]]:
    """Every field of one protobuf message, in order: (number, varint value or (start, end) of a
    length-delimited one); fixed-size fields are skipped."""
    out: list[tuple[int, int | tuple[int, int]]] = []
    while pos < end:
        key, pos = varint(data, pos, end, name)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos, end, name)
            out.append((number, value))
        elif wire == 2:
            length, pos = varint(data, pos, end, name)
            if pos + length > end:
                raise CorruptData(f"CRIU image {name} has an entry that overruns its length")
            out.append((number, (pos, pos + length)))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise CorruptData(f"CRIU image {name} holds a field of unknown wire type {wire}")
    if pos != end:
        raise CorruptData(f"CRIU image {name} has an entry that overruns its length")
    return out


def _last(fields: list[tuple[int, int | tuple[int, int]]], number: int) -> int | tuple[int, int] | None:
    found = None
    for n, value in fields:
        if n == number:
            found = value  # protobuf: the last one counts
    return found


def _packed(data: bytes, span: tuple[int, int], name: str) -> list[int]:
    out, pos = [], span[0]
    while pos < span[1]:
        value, pos = varint(data, pos, span[1], name)
        out.append(value)
    return out


# CRIU's magic numbers (criu/include/magic.h)
IMG_COMMON, IMG_SERVICE, PAGEMAP_MAGIC = 0x54564319, 0x55105940, 0x56084025
PSTREE_MAGIC, CORE_MAGIC, MM_MAGIC = 0x50273030, 0x55053847, 0x57492820
PE_LAZY, PE_PRESENT = 2, 4  # pagemap_entry flags (criu/include/pagemap.h)


@dataclass(frozen=True, slots=True)
class PagemapEntry:
    vaddr: int
    nr_pages: int
    flags: int  # PE_PRESENT: its bytes are in the pages file; PE_LAZY: a lazy restore asks for them


def read_pagemap_entries(path: Path) -> tuple[int, list[PagemapEntry]]:
    """(pages_id, every entry with its flags) of one pagemap image, in file order: the regions
    whose bytes are in pages-<pages_id>.img are the entries flagged PE_PRESENT. Decoded here, not
    with pycriu: a save reads the pagemaps on its critical path, and importing pycriu's protobuf
    modules costs more (~60 ms) than the decode.
    The two messages are pagemap_head {1: pages_id} and pagemap_entry {1: vaddr, 2: nr_pages,
    3: in_parent, 4: flags, 5: nr_pages as uint64}, each after a little-endian u32 length. CRIU
    4.2 writes the count to field 5 and 0 to field 2 (then named compat_nr_pages); older CRIUs
    write field 2 only, and CRIU reads field 2 when 5 is absent. An entry without flags is
    present (CRIU before 3.x wrote none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptData(f"CRIU image {path.name} is missing") from None
    magics = struct.unpack_from("<II", data) if len(data) >= 8 else (0, 0)
    if magics[0] in (IMG_COMMON, IMG_SERVICE) and magics[1] == PAGEMAP_MAGIC:
        pos = 8
    elif magics[0] == PAGEMAP_MAGIC:  # images of CRIU before 1.1 have no first magic
        pos = 4
    else:
        raise CorruptData(f"CRIU image {path.name} is not a pagemap")
    header, entries = None, []
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptData(f"CRIU image {path.name} ends inside an entry")
        (size,) = struct.unpack_from("<I", data, pos)
        end = pos + 4 + size
        if end > len(data):
            raise CorruptData(f"CRIU image {path.name} ends inside an entry")
        fields = varint_fields(data, pos + 4, end, path.name)
        if header is None:
            header = fields.get(1, 0)
        else:
            pages = fields.get(5, fields.get(2))
            if 1 not in fields or pages is None:
                raise CorruptData(f"CRIU image {path.name} has an entry without its address or size")
            entries.append(PagemapEntry(fields[1], pages, fields.get(4, PE_PRESENT)))
        pos = end
    if header is None:
        raise CorruptData(f"CRIU image {path.name} has no header")
    return header, entries


def read_pagemap(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """(pages_id, [(vaddr, nr_pages)]): the regions whose bytes are in pages-<pages_id>.img, in
    file order (read_pagemap_entries, the present ones)."""
    pages_id, entries = read_pagemap_entries(path)
    return pages_id, [(e.vaddr, e.nr_pages) for e in entries if e.flags & PE_PRESENT]


def varint_fields(data: bytes, pos: int, end: int, name: str) -> dict[int, int]:
    """The varint fields of one protobuf message in data[pos:end] (others are skipped), by field
    number; `name` (the image's) goes into the CorruptData a malformed message raises."""
    out: dict[int, int] = {}
    while pos < end:
        key, pos = varint(data, pos, end, name)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], pos = varint(data, pos, end, name)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = varint(data, pos, end, name)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise CorruptData(f"CRIU image {name} holds a field of unknown wire type {wire}")
    if pos != end:
        raise CorruptData(f"CRIU image {name} has an entry that overruns its length")
    return out


def varint(data: bytes, pos: int, end: int, name: str) -> tuple[int, int]:
    """(value, position after it) of the protobuf varint at data[pos:end]."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise CorruptData(f"CRIU image {name} has a malformed number")


def dumped_memory(images: Path, pid: int) -> int:
    _, regions = read_pagemap(images / f"pagemap-{pid}.img")
    return sum(pages * PAGE_SIZE for _, pages in regions)


def command_line_place(images: Path, pid: int) -> tuple[str, int, int] | None:
    """Where the command line of process `pid` is stored: (pages file, offset, length), or None when
    the checkpoint does not hold it (or it looks implausible). Reading only the pages chunk that
    holds it (not every page) is how `ckpt inspect` shows commands without fetching the memory."""
    try:
        data, start_, end_, name = next(_entries(images / f"mm-{pid}.img", MM_MAGIC))
        fields = _fields(data, start_, end_, name)  # mm_entry {8: mm_arg_start, 9: mm_arg_end}
        start, end = _last(fields, 8), _last(fields, 9)
        pages_id, regions = read_pagemap(images / f"pagemap-{pid}.img")
    except (CorruptData, StopIteration):
        return None
    if not isinstance(start, int) or not isinstance(end, int) or not 0 < end - start <= 1 << 16:
        return None
    offset = 0
    for vaddr, pages in regions:
        size = pages * PAGE_SIZE
        if vaddr <= start and end <= vaddr + size:
            return f"pages-{pages_id}.img", offset + start - vaddr, end - start
        offset += size
    return None


def _cmdline(images: Path, pid: int) -> str:
    place = command_line_place(images, pid)
    if place is None:
        return ""
    name, offset, length = place
    try:
        with open(images / name, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
    except OSError:
        return ""
    if len(raw) != length or not raw.strip(b"\0"):  # not there (a pages file holding only some chunks)
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
