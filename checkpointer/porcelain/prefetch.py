"""Unpack while downloading: a restore from a registry hands this to the pull, which tells it the
manifest first and then each blob as it arrives; pages chunks are decompressed into the CRIU image
directory at once, and the root filesystem is unpacked beside the restored bundles, so little is
left to do when the last blob lands."""
from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from pathlib import Path

from ..errors import CkptError
from ..format import pages, roles
from ..format.read import is_checkpoint, unpack_layer
from ..oci import annotations as ann
from ..oci import tarball
from ..oci.layout import Layout
from ..oci.model import Descriptor, Manifest
from .home import Home

log = logging.getLogger(__name__)


class ImagePrefetch:
    def __init__(self, home: Home) -> None:
        self._home = home
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._store: Layout | None = None
        self.work: Path | None = None
        self.manifest: Manifest | None = None
        self.placed: set[str] = set()
        self._rootfs: tuple[str, Path] | None = None  # (layer digest, where it was unpacked)

    def __enter__(self) -> ImagePrefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def on_manifest(self, manifest: Manifest) -> None:
        if not is_checkpoint(manifest) or manifest.encrypted or self.work is not None:
            return
        size = sum(int(layer.annotations.get(pages.LENGTH_KEY, layer.size)) for layer in manifest.layers
                   if layer.media_type == pages.MEDIA_TYPE)
        self.work = self._stack.enter_context(self._home.workdir("restore-", size_hint=size))
        (self.work / "images").mkdir()
        self.manifest = manifest
        self._store = self._home.store()

    def on_blob(self, desc: Descriptor, data: bytes | None = None) -> None:
        """`desc` is in the store, verified (and `data` is its bytes, when the pull kept them)."""
        if self.work is None or self.manifest is None:
            return
        assert self._store is not None
        if desc.annotations.get(ann.LAYER_ROLE) == roles.ROOTFS and desc.media_type != pages.MEDIA_TYPE:
            self._unpack_rootfs(desc)
            return
        if desc.media_type != pages.MEDIA_TYPE:
            return
        # Every chunk with this content: equal memory at two places (zero pages, copied buffers)
        # is one blob, pulled once, placed at each.
        chunks = [layer for layer in self.manifest.layers
                  if layer.digest == desc.digest and layer.media_type == pages.MEDIA_TYPE]
        pages.unpack_pages(self._store, chunks, self.work / "images", complete=False,
                           verified={desc.digest: data} if data is not None else None)
        with self._lock:
            self.placed.add(desc.digest)

    def _unpack_rootfs(self, desc: Descriptor) -> None:
        # Under $CKPT_HOME (beside containers/, so it can be renamed into the bundle), in a work
        # dir of its own: removed if the restore fails, and by `ckpt fsck` if ckpt is killed.
        # Only a head start: if it fails (a full disk, a bad layer), the restore unpacks the rootfs
        # again after the pull and reports what goes wrong then, in its usual order.
        assert self._store is not None
        try:
            with self._lock:
                work = self._stack.enter_context(self._home.workdir("rootfs-"))
            rootfs = work / "rootfs"
            rootfs.mkdir()
            unpack_layer(self._store, desc, rootfs, tarball.ROOTFS)
        except (CkptError, OSError) as exc:
            log.debug("unpacking the rootfs early failed: %s", exc)
            return
        with self._lock:
            self._rootfs = (desc.digest, rootfs)

    def rootfs_for(self, layer: Descriptor) -> Path | None:
        """The directory `layer` (the checkpoint's root filesystem) was unpacked to, if it was."""
        with self._lock:
            return self._rootfs[1] if self._rootfs and self._rootfs[0] == layer.digest else None

    def images_for(self, manifest: Manifest) -> tuple[Path, frozenset[str]] | None:
        """The image directory filled while pulling `manifest`, and the chunks already in it."""
        if self.work is None or self.manifest != manifest:
            return None
        return self.work, frozenset(self.placed)
