"""Read a CRIU image directory with pycriu: the process tree, commands and dumped memory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptData, MissingDependency

PAGE_SIZE = 4096
_PE_PRESENT = 4  # pagemap flag: the page's bytes are in pages-N.img


def _images() -> Any:
    try:
        import pycriu.images  # noqa: PLC0415 - optional system package, imported only when needed
    except ImportError:
        raise MissingDependency("pycriu is not importable",
                                hint="install CRIU's Python bindings (Debian: python3-pycriu) "
                                     "and use a Python that sees them") from None
    return pycriu.images


def load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _images().load(f)
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
    out = []
    for entry in load(images / "pstree.img")["entries"]:
        pid = entry["pid"]
        core = load(images / f"core-{pid}.img")["entries"][0]
        comm = core.get("tc", {}).get("comm", "")
        out.append(Process(pid=pid, ppid=entry.get("ppid", 0), comm=comm,
                           cmdline=_cmdline(images, pid) or comm,
                           threads=len(entry.get("threads", [])), memory=dumped_memory(images, pid)))
    return out


def present_regions(pagemap: dict) -> tuple[int, list[tuple[int, int]]]:
    """(pages_id, [(vaddr, nr_pages)]) of a decoded pagemap image: the regions whose bytes are in
    pages-<pages_id>.img, in file order."""
    entries = pagemap.get("entries") or []
    if not entries or "pages_id" not in entries[0]:
        raise CorruptData("pagemap image has no header")
    return entries[0]["pages_id"], [(r["vaddr"], r["nr_pages"]) for r in entries[1:]
                                    if r.get("flags", _PE_PRESENT) & _PE_PRESENT]


def dumped_memory(images: Path, pid: int) -> int:
    _, regions = present_regions(load(images / f"pagemap-{pid}.img"))
    return sum(pages * PAGE_SIZE for _, pages in regions)


def _read_memory(images: Path, pid: int, start: int, end: int) -> bytes | None:
    """Bytes [start, end) of the process's memory as dumped, or None if not all of it is there."""
    pages_id, regions = present_regions(load(images / f"pagemap-{pid}.img"))
    offset = 0
    for vaddr, pages in regions:
        size = pages * PAGE_SIZE
        if vaddr <= start and end <= vaddr + size:
            with open(images / f"pages-{pages_id}.img", "rb") as f:
                f.seek(offset + start - vaddr)
                return f.read(end - start)
        offset += size
    return None


def _cmdline(images: Path, pid: int) -> str:
    try:
        mm = load(images / f"mm-{pid}.img")["entries"][0]
        start, end = mm["mm_arg_start"], mm["mm_arg_end"]
        if not 0 < end - start <= 1 << 16:
            return ""
        raw = _read_memory(images, pid, start, end)
    except (CorruptData, KeyError, IndexError, OSError):
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") if raw else ""
