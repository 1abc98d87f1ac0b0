"""What a checkpoint is read from: anything that hands out verified manifests and blobs."""
from __future__ import annotations

from typing import Protocol

from ..oci.digest import VerifyingReader
from ..oci.model import Descriptor, Manifest


class BlobSource(Protocol):
    """Where a checkpoint's manifest and blobs are read from. Every read is verified against the
    descriptor's digest and size: read_blob's before it returns, open_blob's at the reader's end
    (drain() checks one that was not read to the end). A Layout (the store, an `oci:` directory) is
    one; so is a registry source that fetches each blob the first time it is read and keeps it in
    the local store (porcelain/places/registry.py)."""

    def read_manifest(self, desc: Descriptor) -> Manifest: ...

    def read_blob(self, desc: Descriptor) -> bytes: ...

    def open_blob(self, desc: Descriptor) -> VerifyingReader: ...
