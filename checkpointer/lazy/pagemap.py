"""Where each page of a checkpoint lives: CRIU's pagemap images decoded with their flags, as runs
of pages that are contiguous both in a process's memory and in its pages-<id>.img file.

A lazy restore needs the entries' flags (`criu.images.read_pagemap_entries`): pages marked
PE_LAZY are left out by `criu restore --lazy-pages` and asked for by the lazy-pages daemon; every
other present page is read by the restore itself from the local pages file."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..criu.images import PagemapEntry, read_pagemap_entries
from .protocol import PAGE_SIZE, PE_LAZY, PE_PRESENT

_TASK_PAGEMAP = re.compile(r"^pagemap-([0-9]+)\.img$")
_ANY_PAGEMAP = re.compile(r"^pagemap-(?:shmem-)?[0-9]+\.img$")


@dataclass(frozen=True, slots=True)
class Run:
    """`length` bytes of memory from `vaddr`, stored at `offset` of the pages file."""

    vaddr: int
    length: int
    offset: int
    lazy: bool

    @property
    def end(self) -> int:
        return self.vaddr + self.length


def runs_of(entries: list[PagemapEntry]) -> list[Run]:
    """The present entries as runs: neighbours whose addresses touch and whose laziness agrees are
    joined (CRIU splits runs at its pipe size, 1 MiB). Offsets follow the file order."""
    out: list[Run] = []
    offset = 0
    for entry in entries:
        if not entry.flags & PE_PRESENT:
            continue
        length, lazy = entry.nr_pages * PAGE_SIZE, bool(entry.flags & PE_LAZY)
        last = out[-1] if out else None
        if last and last.end == entry.vaddr and last.lazy == lazy:
            out[-1] = Run(last.vaddr, last.length + length, last.offset, lazy)
        else:
            out.append(Run(entry.vaddr, length, offset, lazy))
        offset += length
    return out


@dataclass(frozen=True, slots=True)
class TaskPages:
    """The memory of one process (pagemap-<pid>.img) and the pages file that holds it."""

    pid: int
    pages_file: str
    runs: tuple[Run, ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(run.vaddr for run in self.runs))

    def locate(self, vaddr: int, nr_pages: int) -> tuple[int, int] | None:
        """(offset in the pages file, how many of the `nr_pages` from `vaddr` lie there in one piece),
        or None when the checkpoint holds no page at `vaddr`."""
        i = bisect.bisect_right(self._starts, vaddr) - 1
        if i < 0 or vaddr >= self.runs[i].end or vaddr % PAGE_SIZE:
            return None
        run = self.runs[i]
        available = (run.end - vaddr) // PAGE_SIZE
        return run.offset + vaddr - run.vaddr, min(nr_pages, available)

    def lazy_bytes(self) -> int:
        return sum(run.length for run in self.runs if run.lazy)


@dataclass(frozen=True, slots=True)
class PageIndex:
    tasks: dict[int, TaskPages]
    eager: dict[str, tuple[tuple[int, int], ...]]  # pages file -> (offset, length) the restore reads itself

    @classmethod
    def load(cls, images: Path) -> PageIndex:
        tasks: dict[int, TaskPages] = {}
        eager: dict[str, list[tuple[int, int]]] = {}
        for path in sorted(images.iterdir()):
            if not _ANY_PAGEMAP.match(path.name):
                continue
            pages_id, entries = read_pagemap_entries(path)
            name = f"pages-{pages_id}.img"
            runs = runs_of(entries)
            task = _TASK_PAGEMAP.match(path.name)
            if task:  # a process: its lazy runs come from the daemon, the rest from the file
                tasks[int(task.group(1))] = TaskPages(int(task.group(1)), name, tuple(runs))
                eager.setdefault(name, []).extend((r.offset, r.length) for r in runs if not r.lazy)
            else:  # shared memory is restored from the file, whole
                eager.setdefault(name, []).extend((r.offset, r.length) for r in runs)
        return cls(tasks, {name: tuple(sorted(ranges)) for name, ranges in eager.items()})

    def lazy_bytes(self) -> int:
        return sum(task.lazy_bytes() for task in self.tasks.values())

    def lazy_ranges(self, pages_file: str) -> list[tuple[int, int]]:
        """(offset, length) of the lazy runs stored in `pages_file`, in file order."""
        return sorted((run.offset, run.length) for task in self.tasks.values() if task.pages_file == pages_file
                      for run in task.runs if run.lazy)
