"""A small, fixed CRIU image directory, encoded with pycriu (no dump, no root): one process,
`sleepy --forever`, with two pages of memory that hold its command line. inspect decodes it like
a real dump; the pages go through the address-aligned chunking like a real dump's."""
from __future__ import annotations

import io
from pathlib import Path

PID = 1
COMM = "sleepy"
ARGS = b"sleepy\0--forever\0"
VADDR = 0x10000
PAGES = 2


def _encode(magic: str, entries: list[dict]) -> bytes:
    import pycriu.images

    out = io.BytesIO()
    pycriu.images.dump({"magic": magic, "entries": entries}, out)
    return out.getvalue()


def write_images(images: Path) -> Path:
    """Write the image directory into `images` (made if missing); returns it."""
    images.mkdir(parents=True, exist_ok=True)
    files = {
        "inventory.img": _encode("INVENTORY", [{"img_version": 2, "fdinfo_per_id": True}]),
        "pstree.img": _encode("PSTREE", [{"pid": PID, "ppid": 0, "pgid": PID, "sid": PID, "threads": [PID]}]),
        f"core-{PID}.img": _encode("CORE", [{"mtype": "X86_64", "tc": {
            "task_state": 1, "exit_code": 0, "personality": 0, "flags": 0, "blk_sigset": "0x0", "comm": COMM}}]),
        f"mm-{PID}.img": _encode("MM", [{
            "mm_start_code": "0x1000", "mm_end_code": "0x2000", "mm_start_data": "0x2000", "mm_end_data": "0x3000",
            "mm_start_stack": "0x7000", "mm_start_brk": "0x4000", "mm_brk": "0x5000",
            "mm_arg_start": hex(VADDR), "mm_arg_end": hex(VADDR + len(ARGS)), "mm_env_start": hex(VADDR + len(ARGS)),
            "mm_env_end": hex(VADDR + len(ARGS)), "exe_file_id": 1}]),
        f"pagemap-{PID}.img": _encode("PAGEMAP", [
            {"pages_id": PID},
            {"vaddr": hex(VADDR), "compat_nr_pages": 0, "nr_pages": PAGES, "flags": "PE_PRESENT"}]),
        f"pages-{PID}.img": ARGS + bytes(range(256)) * 16 + b"\0" * (PAGES * 4096 - len(ARGS) - 4096),
    }
    for name, data in files.items():
        (images / name).write_bytes(data)
    return images
