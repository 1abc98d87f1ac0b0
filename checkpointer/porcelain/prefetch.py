"""Unpack memory while it downloads: a restore from a registry hands this to the pull, which tells
it the manifest first and then each blob as it arrives; pages chunks are decompressed into the
CRIU image directory at once, so little is left to do when the last blob lands."""
from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

from ..format import pages
from ..format.read import is_checkpoint
from ..oci.layout import Layout
from ..oci.model import Descriptor, Manifest
from .home import Home


class ImagePrefetch:
    def __init__(self, home: Home) -> None:
        self._home = home
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._store: Layout | None = None
        self.work: Path | None = None
        self.manifest: Manifest | None = None
        self.placed: set[str] = set()

    def __enter__(self) -> "ImagePrefetch":
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
        if self.work is None or self.manifest is None or desc.media_type != pages.MEDIA_TYPE:
            return
        assert self._store is not None
        # Every chunk with this content: equal memory at two places (zero pages, copied buffers)
        # is one blob, pulled once, placed at each.
        chunks = [layer for layer in self.manifest.layers
                  if layer.digest == desc.digest and layer.media_type == pages.MEDIA_TYPE]
        pages.unpack_pages(self._store, chunks, self.work / "images", complete=False,
                           verified={desc.digest: data} if data is not None else None)
        with self._lock:
            self.placed.add(desc.digest)

    def images_for(self, manifest: Manifest) -> tuple[Path, frozenset[str]] | None:
        """The image directory filled while pulling `manifest`, and the chunks already in it."""
        if self.work is None or self.manifest != manifest:
            return None
        return self.work, frozenset(self.placed)
