"""Where the bytes of pages chunks come from: a ChunkSource hands out whole blobs, each verified
against its descriptor's digest and size before a byte of it is used."""
from __future__ import annotations

from typing import Protocol

from ..oci.layout import Layout
from ..oci.model import Descriptor


class ChunkSource(Protocol):
    """A store of blobs by digest. `fetch` returns the blob's bytes, verified (CorruptData if they
    do not match). It may be called from several threads at once. Errors are ckpt's own:
    Unreachable or RegistryError for trouble that may pass, CorruptData and NotFound for trouble
    that will not."""

    def fetch(self, desc: Descriptor) -> bytes: ...

    def close(self) -> None: ...


class LayoutSource:
    """Chunks from a local OCI image layout (the store, or an `oci:` directory)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.fetched_bytes = 0

    def fetch(self, desc: Descriptor) -> bytes:
        data = self.layout.read_blob(desc)  # digest and size checked before it returns
        self.fetched_bytes += len(data)  # a counter for reports only: a lost update does no harm
        return data

    def close(self) -> None:
        pass
