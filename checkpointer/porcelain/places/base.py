"""The two seams every checkpoint moves through: a Source it is read from and a Sink it is written
to. The local store, an `oci:` layout, a registry and an archive file are each both."""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...format.read import Checkpoint
from ...format.source import BlobSource
from ...format.write import OnBlob
from ...oci.layout import Layout
from ...oci.model import Descriptor, Manifest
from ...reference import Ref


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    insecure: bool = False
    ca_dir: Path | None = None
    jobs: int = 4


class Prefetch(Protocol):
    """Hears of a download as it happens (porcelain/prefetch.py unpacks while it downloads)."""

    def on_manifest(self, manifest: Manifest) -> None: ...

    def on_blob(self, desc: Descriptor, data: bytes | None = None) -> None: ...


class Source(BlobSource, Protocol):
    """A checkpoint (or another engine's image) to read. Reads are verified (BlobSource); a registry
    source fetches a blob only when it is first read, so reading the config and the small CRIU
    layer moves no memory pages. complete() brings every blob here at once, in parallel."""

    descriptor: Descriptor  # the manifest (or index) the reference names
    origin: str  # "ckpt", or the other engine's format it was converted from (compat/read.py)

    def complete(self, prefetch: Prefetch | None = None) -> Layout:
        """Every blob of `descriptor` in one layout, verified, which is returned; a download tells
        `prefetch` of the manifest and then of each blob as it lands."""
        ...

    def index_annotations(self) -> dict[str, str]:
        """The annotations of the index the reference names, if it names one (compat/read.py)."""
        ...


class Sink(Protocol):
    """A place to publish a checkpoint at: its tag is written last, once every blob is there."""

    ref: Ref
    local: bool  # the local store itself: a save packs straight into it

    def preflight(self) -> None:
        """Fail now, before anything is frozen, if publishing here cannot work (a registry that
        cannot be reached or refuses our credentials, a digest where a tag belongs)."""
        ...

    def early_upload(self, layout: Layout) -> AbstractContextManager[OnBlob | None]:
        """While a checkpoint is packed into `layout`, the callback to hand each finished blob to
        (a registry uploads it at once), or None."""
        ...

    def publish(self, layout: Layout, desc: Descriptor) -> Descriptor:
        """Make `desc`, whose blobs are in `layout`, reachable here; returns what was published."""
        ...


@dataclass(frozen=True, slots=True)
class Opened:
    """A ckpt checkpoint ready to read: converted from another engine's format, or decrypted, if it
    had to be. `source.descriptor` is the checkpoint's manifest."""

    source: Source
    checkpoint: Checkpoint

    @property
    def origin(self) -> str:
        return self.source.origin
