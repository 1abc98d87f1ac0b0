"""criu/images.py's own decoding of the few fields `ckpt inspect` shows (pstree, core's comm, mm's
command line), checked against pycriu's on images pycriu encoded, with several processes, threads
and unicode; damaged images are CorruptData, never a crash."""
from __future__ import annotations

import io
import random

import pytest

from checkpointer.criu import images
from checkpointer.errors import CorruptData

pycriu_images = pytest.importorskip("pycriu.images")


def _encode(magic: str, entries: list[dict]) -> bytes:
    out = io.BytesIO()
    pycriu_images.dump({"magic": magic, "entries": entries}, out)
    return out.getvalue()


def _write(tmp_path, tree: list[tuple[int, int, list[int], str]]) -> None:  # noqa: ANN001
    (tmp_path / "pstree.img").write_bytes(_encode("PSTREE", [
        {"pid": pid, "ppid": ppid, "pgid": 1, "sid": 1, "threads": threads} for pid, ppid, threads, _ in tree]))
    for pid, _, _, comm in tree:
        (tmp_path / f"core-{pid}.img").write_bytes(_encode("CORE", [{"mtype": "X86_64", "tc": {
            "task_state": 1, "exit_code": 0, "personality": 0, "flags": 0, "blk_sigset": "0x0", "comm": comm}}]))
        args = f"{comm}\0--n\0{pid}\0".encode()
        vaddr = 0x10000 * pid
        (tmp_path / f"mm-{pid}.img").write_bytes(_encode("MM", [{
            "mm_start_code": "0x1000", "mm_end_code": "0x2000", "mm_start_data": "0x2000", "mm_end_data": "0x3000",
            "mm_start_stack": "0x7000", "mm_start_brk": "0x4000", "mm_brk": "0x5000", "mm_arg_start": hex(vaddr + 8),
            "mm_arg_end": hex(vaddr + 8 + len(args)), "mm_env_start": hex(vaddr), "mm_env_end": hex(vaddr),
            "exe_file_id": 1}]))
        (tmp_path / f"pagemap-{pid}.img").write_bytes(_encode("PAGEMAP", [
            {"pages_id": pid}, {"vaddr": hex(vaddr), "compat_nr_pages": 0, "nr_pages": 1, "flags": "PE_PRESENT"}]))
        (tmp_path / f"pages-{pid}.img").write_bytes((b"\0" * 8 + args).ljust(4096, b"\0"))


def test_the_process_tree_matches_pycriu(tmp_path):
    rng = random.Random(7)
    tree = [(1, 0, [1, 7, 9], "init"), (5, 1, [5], "wörker"), (300000, 5, [300000, 300001], "x" * 15)]
    tree += [(pid, 1, [pid], f"p{pid}") for pid in rng.sample(range(2, 4000), 5)]
    _write(tmp_path, tree)
    got = images.process_tree(tmp_path)
    pstree = images.load(tmp_path / "pstree.img")["entries"]
    assert [(p.pid, p.ppid, p.threads) for p in got] == [(e["pid"], e["ppid"], len(e["threads"])) for e in pstree]
    for proc, (pid, _, _, comm) in zip(got, tree, strict=True):
        assert proc.comm == images.load(tmp_path / f"core-{pid}.img")["entries"][0]["tc"]["comm"] == comm
        assert proc.cmdline == f"{comm} --n {pid}" and proc.memory == 4096


def test_damaged_images_are_corrupt_data(tmp_path):
    _write(tmp_path, [(1, 0, [1], "init")])
    good = (tmp_path / "pstree.img").read_bytes()
    for damaged in (good[:-1], good[:4] + b"\0\0\0\0" + good[8:], good[:8] + b"\xff\xff\xff\x7f"):
        (tmp_path / "pstree.img").write_bytes(damaged)
        with pytest.raises(CorruptData):
            images.process_tree(tmp_path)
    (tmp_path / "pstree.img").write_bytes(good)
    (tmp_path / "mm-1.img").write_bytes(b"garbage!")
    assert images.process_tree(tmp_path)[0].cmdline == "init"  # no command line: the name instead
