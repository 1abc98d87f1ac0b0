"""Where the bytes of pages chunks come from: a ChunkSource hands out whole blobs, each verified
against its descriptor's digest and size before a byte of it is used."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import UsageError
from ..oci.layout import Layout
from ..oci.model import Descriptor

if TYPE_CHECKING:
    from .job import SourceSpec

log = logging.getLogger(__name__)


class ChunkSource(Protocol):
    """A store of blobs by digest. `read_blob` returns the blob's bytes, verified (CorruptData if
    they do not match); it is the read_blob of format/source.py's BlobSource, so a Layout or any
    BlobSource serves as one. It may be called from several threads at once. Errors are ckpt's
    own: Unreachable or RegistryError for trouble that may pass, CorruptData and NotFound for
    trouble that will not."""

    def read_blob(self, desc: Descriptor) -> bytes: ...


class LayoutSource:
    """Chunks from a local OCI image layout (the store, or an `oci:` directory)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.where = f"layout {layout.root}"
        self.fetched_bytes = 0

    def read_blob(self, desc: Descriptor) -> bytes:
        data = self.layout.read_blob(desc)  # digest and size checked before it returns
        self.fetched_bytes += len(data)  # a counter for reports only: a lost update does no harm
        return data

    def pin(self, chunks: Sequence[Descriptor]) -> None:
        """Keep the chunks in the layout while this process serves them: a `ckpt rm` of the tag
        meanwhile must not take the memory of a running container away."""
        try:
            self.layout.pin(c.digest for c in chunks)
        except OSError as exc:  # a layout this user cannot write (read-only, say): its blobs stay anyway
            log.warning("cannot pin the chunks in %s: %s", self.layout.root, exc.strerror or exc)

    def close(self) -> None:
        pass


def open_source(spec: SourceSpec) -> ChunkSource:
    """The ChunkSource a SourceSpec describes (in the process that serves the pages)."""
    if spec.kind == "layout" and spec.layout:
        return LayoutSource(Layout(Path(spec.layout)))
    if spec.kind == "registry" and spec.host and spec.repository:
        from ..registry import RetryPolicy
        from ..registry.client import Registry
        from .cache import ChunkCache
        from .registry_source import RegistrySource

        # One try per request: Memory retries with its own backoff, within the restore's deadline.
        registry = Registry(spec.host, insecure=spec.insecure, ca_dir=spec.ca_dir, plain_http=spec.plain_http,
                            timeout=10.0, retry=RetryPolicy(tries=1))
        cache = ChunkCache(Path(spec.cache), spec.cache_limit if spec.cache_limit is not None else 1 << 62) \
            if spec.cache else None
        return RegistrySource(registry, spec.repository, cache=cache)
    raise UsageError(f"lazy restore source {spec.kind!r} is not one this version knows")
