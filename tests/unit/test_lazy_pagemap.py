"""Lazy restore plumbing, offline: the page-server message layout, pagemaps read with their
flags, and the mapping of a process's address to the chunk that holds its bytes."""
from __future__ import annotations

import io
import random
from dataclasses import replace

import pytest
from lazy_helpers import EAGER, LAZY, make_checkpoint, pagemap_image

from checkpointer.errors import CorruptData, UsageError
from checkpointer.lazy import protocol as ps
from checkpointer.lazy.chunks import ChunkMap
from checkpointer.criu.images import PagemapEntry as Entry
from checkpointer.criu.images import read_pagemap_entries as read_entries
from checkpointer.lazy.pagemap import PageIndex, runs_of

P = ps.PAGE_SIZE


def test_message_layout_is_criu_struct_page_server_iov():
    # u32 cmd, 4 bytes padding, u64 nr_pages, u64 vaddr, u64 dst_id: 32 bytes, host order
    raw = ps.encode(ps.PS_IOV_GET, nr_pages=3, vaddr=0x7F0000001000, dst_id=42)
    assert len(raw) == 32
    assert raw[:4] == (7).to_bytes(4, "little") and raw[4:8] == bytes(4)
    assert int.from_bytes(raw[8:16], "little") == 3 and int.from_bytes(raw[16:24], "little") == 0x7F0000001000
    assert int.from_bytes(raw[24:32], "little") == 42
    got = ps.decode(raw)
    assert (got.command, got.flags, got.nr_pages, got.vaddr, got.dst_id) == (ps.PS_IOV_GET, 0, 3, 0x7F0000001000, 42)


def test_an_answer_is_add_f_with_pe_present_in_the_flag_bits():
    request = ps.decode(ps.encode(ps.PS_IOV_GET, nr_pages=16, vaddr=0x1000, dst_id=7))
    header = ps.decode(ps.pages_header(request, 5))
    assert (header.command, header.flags) == (ps.PS_IOV_ADD_F, ps.PE_PRESENT)
    assert int.from_bytes(ps.pages_header(request, 5)[:4], "little") == (4 << 16) | 6
    assert (header.nr_pages, header.vaddr, header.dst_id) == (5, 0x1000, 7)
    for wrong in (0, 17):  # never none, never more than asked: the daemon reads exactly that many
        with pytest.raises(ValueError):
            ps.pages_header(request, wrong)


def test_close_commands_and_ack():
    assert ps.decode(ps.encode(ps.PS_IOV_CLOSE)).command == 0x1023
    assert ps.decode(ps.encode(ps.PS_IOV_FORCE_CLOSE)).command == 0x1024
    assert ps.CLOSE_ACK == bytes(4)
    with pytest.raises(CorruptData):
        ps.decode(b"\0" * 31)


def test_entries_keep_their_flags(tmp_path):
    entries = [(0x400000, 1, EAGER), (0x7F0000000000, 256, LAZY), (0x7F0000100000, 3, LAZY), (0x7FFF0000, 2, 1)]
    path = tmp_path / "pagemap-9.img"
    path.write_bytes(pagemap_image(9, entries))
    pages_id, got = read_entries(path)
    assert pages_id == 9
    assert got == [Entry(*e) for e in entries]


def test_entries_match_pycriu(tmp_path):
    images = pytest.importorskip("pycriu.images")
    rng = random.Random(5)
    entries = [(rng.randrange(1 << 47) & ~(P - 1), rng.randrange(1, 1000), rng.choice([EAGER, LAZY, 1, 0]))
               for _ in range(30)]
    data = pagemap_image(3, entries)
    decoded = images.load(io.BytesIO(data))["entries"]
    assert decoded[0]["pages_id"] == 3
    assert [(e["vaddr"], e["nr_pages"], e["flags"]) for e in decoded[1:]] == entries
    path = tmp_path / "pagemap-3.img"
    path.write_bytes(data)
    assert [(e.vaddr, e.nr_pages, e.flags) for e in read_entries(path)[1]] == entries


def test_damaged_pagemaps_are_corrupt_data(tmp_path):
    good = pagemap_image(1, [(0x1000, 2, LAZY)])
    path = tmp_path / "pagemap-1.img"
    for damaged in (good[:-1], b"\x01\x02\x03\x04" + good[4:], good[:8]):
        path.write_bytes(damaged)
        with pytest.raises(CorruptData):
            read_entries(path)
    with pytest.raises(CorruptData):
        read_entries(tmp_path / "pagemap-2.img")


def test_runs_join_touching_entries_of_the_same_kind():
    entries = [Entry(0x10000, 256, LAZY), Entry(0x110000, 256, LAZY), Entry(0x210000, 1, EAGER),
               Entry(0x300000, 4, 1), Entry(0x400000, 2, LAZY)]  # an in-parent entry holds no bytes here
    runs = runs_of(entries)
    assert [(r.vaddr, r.length, r.offset, r.lazy) for r in runs] == [
        (0x10000, 512 * P, 0, True), (0x210000, P, 512 * P, False), (0x400000, 2 * P, 513 * P, True)]


def test_locate_and_index(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x400000, 2, EAGER), (0x7F0000000000, 300, LAZY),
                                         (0x7F0000200000, 40, LAZY), (0x7FFF00000000, 8, EAGER)]})
    index = PageIndex.load(syn.images)
    task = index.tasks[1]
    assert task.pages_file == "pages-1.img"
    assert task.locate(0x7F0000000000, 16) == (2 * P, 16)
    assert task.locate(0x7F0000000000 + 290 * P, 16) == (292 * P, 10)  # only what lies there in one piece
    assert task.locate(0x7F0000000000 + 300 * P, 1) is None  # a gap
    assert task.locate(0x7F0000000001, 1) is None  # not page aligned
    assert task.locate(0x1000, 1) is None
    assert index.lazy_bytes() == 340 * P
    assert index.eager == {"pages-1.img": ((0, 2 * P), (342 * P, 8 * P))}
    assert index.lazy_ranges("pages-1.img") == [(2 * P, 300 * P), (302 * P, 40 * P)]


def test_shared_memory_pages_are_all_eager(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x7F0000000000, 10, LAZY)]})
    (syn.images / "pagemap-shmem-77.img").write_bytes(pagemap_image(5, [(0, 4, LAZY), (0x10000, 2, EAGER)]))
    index = PageIndex.load(syn.images)
    assert set(index.tasks) == {1}
    assert index.eager["pages-5.img"] == ((0, 4 * P), (4 * P, 2 * P))


def test_chunk_map_covers_ranges_across_chunks(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x7F0000000000, 1500, LAZY)]}, chunk_size=1 << 20)
    cmap = ChunkMap(syn.chunks)
    chunks = cmap.chunks("pages-1.img")
    assert len(chunks) >= 4 and chunks[0].offset == 0 and chunks[-1].end == 1500 * P
    boundary = chunks[1].offset
    got = cmap.covering("pages-1.img", boundary - P, 2 * P)
    assert [c.offset for c in got] == [chunks[0].offset, chunks[1].offset]
    assert cmap.covering("pages-1.img", boundary, P) == [chunks[1]]
    assert cmap.covering("pages-1.img", 0, 1500 * P) == chunks
    assert cmap.covering("pages-2.img", 0, P) == []


def test_chunk_map_refuses_gaps(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x7F0000000000, 1500, LAZY)]})
    with pytest.raises(CorruptData):
        ChunkMap(syn.chunks[:1] + syn.chunks[2:])


def test_memory_that_is_not_plain_chunks_is_refused(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x7F0000000000, 300, LAZY)]})
    encrypted = [replace(d, media_type=d.media_type + "+encrypted") for d in syn.chunks]
    with pytest.raises(UsageError, match="encrypted"):
        ChunkMap(encrypted)
    tarred = [replace(syn.chunks[0], media_type="application/vnd.oci.image.layer.v1.tar+zstd")]
    with pytest.raises(UsageError, match="cannot be restored lazily"):
        ChunkMap(tarred)
