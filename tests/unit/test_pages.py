"""Memory pages as chunks: what is packed comes back byte for byte, through a whole unpack and
through the piecemeal one a pull drives (ImagePrefetch), with equal chunks placed everywhere."""
from __future__ import annotations

import os
import random

import pytest
import zstandard

from checkpointer.errors import CorruptData
from checkpointer.format import pages
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest, empty_config
from checkpointer.porcelain.home import Home
from checkpointer.porcelain.prefetch import ImagePrefetch

MIB = 1 << 20


def _memory() -> bytes:
    """Random, text-like and zero pieces, with one random MiB repeated far from its first copy."""
    rng = random.Random(7)
    copied = rng.randbytes(MIB)
    return b"".join([copied, b"text " * (MIB // 5) + b"t" * (MIB % 5), bytes(3 * MIB), rng.randbytes(MIB),
                     copied, bytes(MIB), rng.randbytes(12288)])


@pytest.fixture
def packed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    memory = _memory()
    (images / "pages-1.img").write_bytes(memory)
    layout = Layout(tmp_path / "store", create=True)
    layers = pages.write_pages(layout, images, ["pages-1.img"], chunk_size=MIB)
    return layout, layers, memory


def test_equal_memory_is_one_blob(packed):
    _, layers, _ = packed
    digests = [layer.digest for layer in layers]
    # cut at every MiB (no pagemap here), the 12 KiB tail joining the last zero MiB: the copy and
    # the three zero MiBs in the middle share blobs
    assert len(layers) == 8 and len(set(digests)) == 5


def test_whole_unpack_gives_the_memory_back_with_zeros_left_as_holes(packed, tmp_path):
    layout, layers, memory = packed
    out = tmp_path / "out"
    out.mkdir()
    pages.unpack_pages(layout, layers, out)
    assert (out / "pages-1.img").read_bytes() == memory
    allocated = os.stat(out / "pages-1.img").st_blocks * 512
    assert allocated <= len(memory) - 3 * MIB  # the zero MiBs were never written


def test_piecemeal_unpack_as_a_pull_drives_it_places_every_equal_chunk(packed, tmp_path):
    layout, layers, memory = packed
    manifest = Manifest(empty_config(), tuple(layers), artifact_type=mt.CHECKPOINT_ARTIFACT)
    home = Home(tmp_path / "home")
    with ImagePrefetch(home) as prefetch:
        prefetch.on_manifest(manifest)
        prefetch._store = layout  # the blobs are already where a pull would have put them
        unique = {layer.digest: layer for layer in layers}.values()
        for i, layer in enumerate(unique):  # in memory for some, from the store for the others
            prefetch.on_blob(layer, layout.read_blob(layer) if i % 2 else None)
        work, placed = prefetch.images_for(manifest)
        assert placed == {layer.digest for layer in layers}
        pages.check_placed(layers, work / "images")
        assert (work / "images" / "pages-1.img").read_bytes() == memory


def test_a_zero_chunk_at_the_end_still_gives_the_file_its_length(tmp_path):
    layout = Layout(tmp_path / "store", create=True)
    blob = layout.put_bytes(zstandard.ZstdCompressor().compress(bytes(2 * MIB)), pages.MEDIA_TYPE, {
        pages.FILE_KEY: "pages-1.img", pages.OFFSET_KEY: str(MIB), pages.LENGTH_KEY: str(2 * MIB)})
    out = tmp_path / "out"
    out.mkdir()
    pages.unpack_pages(layout, [blob], out, complete=False)
    assert os.stat(out / "pages-1.img").st_size == 3 * MIB
    assert (out / "pages-1.img").read_bytes() == bytes(3 * MIB)


def test_handed_over_bytes_that_do_not_match_their_placement_are_refused(packed, tmp_path):
    layout, layers, _ = packed
    out = tmp_path / "out"
    out.mkdir()
    short = zstandard.ZstdCompressor().compress(b"x" * 4096)
    with pytest.raises(CorruptData, match="holds 4096 bytes"):
        pages.unpack_pages(layout, layers[:1], out, complete=False, verified={layers[0].digest: short})
