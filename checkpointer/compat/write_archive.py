"""Write a checkpoint as an engine's archive directory or archive file (`ckpt export`).

A checkpoint that came from Podman, CRI-O or containerd gives its archive back byte for byte
(the `engine` layer plus `checkpoint/`). A runc checkpoint gets the files checkpointctl reads:
checkpoint/, spec.dump, a config.dump with checkpointctl's fields, and its full root filesystem
as rootfs-diff.tar (a diff against an empty image).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..format import roles
from ..format.read import Checkpoint, is_checkpoint, open_checkpoint, unpack_images, unpack_layer
from ..oci import mediatypes as mt
from ..oci import tarball
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress, noop
from . import archive, keys
from .exportdir import has_archive, unpack_archive_dir


def fill_archive_dir(layout: Layout, checkpoint: Checkpoint, root: Path, *, on_progress: OnProgress = noop) -> None:
    """Lay the checkpoint out in the empty directory `root` as an engine's checkpoint archive."""
    if has_archive(checkpoint):
        unpack_archive_dir(layout, checkpoint, root, on_progress=on_progress)
        return
    spec_layer, rootfs_layer = checkpoint.layer(roles.SPEC), checkpoint.layer(roles.ROOTFS)
    if spec_layer is None or rootfs_layer is None:
        raise UsageError(f"a {checkpoint.config.engine} checkpoint has no runtime spec and root filesystem, and "
                         "every engine's archive needs them (spec.dump, rootfs-diff.tar)")
    images = root / keys.CHECKPOINT_DIR
    images.mkdir(mode=0o700)
    unpack_images(layout, checkpoint, images, on_progress=on_progress)
    (root / keys.SPEC_DUMP).write_bytes(layout.read_blob(spec_layer))
    config = checkpoint.config
    (root / keys.CONFIG_DUMP).write_text(json.dumps({
        "id": config.container_id, "name": config.container_name, "rootfsImageName": config.base_name or "",
        "runtime": config.runtime, "createdTime": config.created, "checkpointedTime": config.created,
        keys.CKPT_COMPLETE_ROOTFS: True,
    }, indent=2))
    with tempfile.TemporaryDirectory(prefix=".rootfs-", dir=root.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        unpack_layer(layout, rootfs_layer, rootfs, tarball.ROOTFS)
        with open(root / keys.ROOTFS_DIFF, "wb") as out:
            tarball.pack(rootfs, out, zero_mtime=False)


def export_archive(layout: Layout, desc: Descriptor, path: Path, *, on_progress: OnProgress = noop) -> int:
    """Write the checkpoint `desc` (ckpt's format or another engine's image) as the archive `path`
    (.tar, .tar.gz or .tar.zst); returns its size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ckpt-export-", dir=path.parent) as tmp:
        work = Path(tmp)
        if desc.media_type in mt.INDEX_TYPES or not is_checkpoint(layout.read_manifest(desc)):
            from .read import image_to_ckpt

            converted = Layout(work / "layout", create=True)
            desc, _ = image_to_ckpt(layout, desc, converted, work / "image", on_progress=on_progress)
            layout = converted
        root = work / "archive"
        root.mkdir()
        fill_archive_dir(layout, open_checkpoint(layout, desc), root, on_progress=on_progress)
        return archive.write(root, path)
