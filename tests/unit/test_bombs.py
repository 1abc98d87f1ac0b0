"""Decompression bombs and lying size annotations are refused before they cost disk or memory."""
from __future__ import annotations

import tarfile

import pytest
import zstandard

from checkpointer.errors import CorruptData
from checkpointer.format import pages
from checkpointer.format.read import unpack_layer
from checkpointer.oci import mediatypes as mt
from checkpointer.oci import tarball
from checkpointer.oci.layout import Layout


def _zstd_tar_declaring(size: int) -> bytes:
    """A tar whose one entry claims `size` bytes (only the header is real), zstd-compressed."""
    info = tarfile.TarInfo("huge.img")
    info.size = size
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    return zstandard.ZstdCompressor().compress(header + b"\0" * 1024)


def test_tar_claiming_more_than_the_disk_holds_is_refused(tmp_path):
    layout = Layout(tmp_path / "store", create=True)
    desc = layout.put_bytes(_zstd_tar_declaring(1 << 50), mt.LAYER_TAR_ZSTD)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CorruptData, match="unpacks to more than"):
        unpack_layer(layout, desc, dest, tarball.CRIU_IMAGES)
    assert list(dest.iterdir()) == []


def _chunk(layout: Layout, raw: bytes, length: int, offset: int = 0):
    return layout.put_bytes(zstandard.ZstdCompressor().compress(raw), pages.MEDIA_TYPE, {
        pages.FILE_KEY: "pages-1.img", pages.OFFSET_KEY: str(offset), pages.LENGTH_KEY: str(length)})


def test_pages_chunk_bigger_than_it_says_is_refused(tmp_path):
    layout = Layout(tmp_path / "store", create=True)
    bomb = _chunk(layout, b"\0" * (64 << 20), length=4096)  # 64 MiB of zeros, claims one page
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(CorruptData):
        pages.unpack_pages(layout, [bomb], images)


def test_pages_chunk_claiming_a_huge_length_is_refused_before_decompression(tmp_path):
    layout = Layout(tmp_path / "store", create=True)
    liar = _chunk(layout, b"x" * 4096, length=pages.MAX_CHUNK_BYTES + 4096)
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(CorruptData, match="invalid placement"):
        pages.unpack_pages(layout, [liar], images)


def test_pages_chunks_with_a_gap_or_overlap_are_refused(tmp_path):
    layout = Layout(tmp_path / "store", create=True)
    first = _chunk(layout, b"a" * 4096, length=4096)
    gap = _chunk(layout, b"b" * 4096, length=4096, offset=8192)
    overlap = _chunk(layout, b"c" * 4096, length=4096, offset=2048)
    for bad in ([first, gap], [first, overlap], [gap]):
        images = tmp_path / f"images-{len(list(tmp_path.iterdir()))}"
        images.mkdir()
        with pytest.raises(CorruptData, match="overlap or leave a gap"):
            pages.unpack_pages(layout, bad, images)
        assert list(images.iterdir()) == []
