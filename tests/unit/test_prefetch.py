"""The root filesystem is unpacked while the rest of a checkpoint downloads, into a work dir that
goes away with the restore unless the bundle took it."""
from __future__ import annotations

from checkpointer.format import roles
from checkpointer.format.write import write_tar_layer
from checkpointer.oci import annotations as ann
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest, empty_config
from checkpointer.porcelain.home import Home
from checkpointer.porcelain.prefetch import ImagePrefetch


def test_rootfs_is_unpacked_as_it_lands_and_cleaned_up_if_unused(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (tree / "bin" / "alias").symlink_to("tool")
    layout = Layout(tmp_path / "store", create=True)
    layer = write_tar_layer(layout, tree, roles.ROOTFS, zero_mtime=False, include_root=True)
    manifest = Manifest(empty_config(), (layer,), artifact_type=mt.CHECKPOINT_ARTIFACT)
    home = Home(tmp_path / "home")
    with ImagePrefetch(home) as prefetch:
        prefetch.on_manifest(manifest)
        prefetch._store = layout  # where the pull put the blob
        prefetch.on_blob(layer)
        rootfs = prefetch.rootfs_for(layer)
        assert rootfs is not None and rootfs.is_relative_to(home.root)
        assert (rootfs / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
        assert (rootfs / "bin" / "alias").readlink().name == "tool"
    assert not rootfs.exists(), "an unused root filesystem outlived the restore"


def test_a_rootfs_that_cannot_be_unpacked_early_is_left_for_the_restore(tmp_path):
    """The early unpack is only a head start: a layer it cannot unpack (here hostile, elsewhere a
    full disk) does not fail the pull; the restore unpacks it again and reports the error then."""
    import io
    import tarfile

    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    layout = Layout(tmp_path / "store", create=True)
    layer = layout.put_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()), mt.LAYER_TAR_ZSTD,
                             {ann.LAYER_ROLE: roles.ROOTFS})
    manifest = Manifest(empty_config(), (layer,), artifact_type=mt.CHECKPOINT_ARTIFACT)
    with ImagePrefetch(Home(tmp_path / "home")) as prefetch:
        prefetch.on_manifest(manifest)
        prefetch._store = layout
        prefetch.on_blob(layer)
        assert prefetch.rootfs_for(layer) is None
    assert not (tmp_path / "escape").exists()
