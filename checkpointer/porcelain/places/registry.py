"""Checkpoints in an OCI registry. Reading fetches the manifest at once and each blob the first time
it is read, verified and then kept in the local store by its digest: `ckpt inspect` and the checks
before a restore move only the config and the small CRIU layer, and a lazy restore only what it
needs before the container runs. Every blob fetched also goes into the node's blob cache
(porcelain/cache.py), and a blob the cache holds is not fetched again: a restart of the same
checkpoint asks the registry for its manifest alone. complete() pulls everything else, in parallel,
unpacking while it downloads (porcelain/prefetch.py). Writing uploads each blob as soon as it is
packed (early_upload) and pushes the manifest, with its tag, last."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import CorruptData, UsageError
from ...format.write import OnBlob
from ...oci import mediatypes as mt
from ...oci.digest import VerifyingReader
from ...oci.layout import Layout
from ...oci.model import Descriptor, Index, Manifest
from ...progress import OnProgress, noop
from ...reference import RegistryRef
from ...timing import phase
from .. import origins
from ..home import disk_errors
from .base import Prefetch, RegistryOptions

if TYPE_CHECKING:
    from ...lazy.cache import ChunkCache
    from ...registry import Registry

_clients: dict[tuple[str, bool, Path | None], Any] = {}


def client(ref: RegistryRef, opts: RegistryOptions) -> Registry:
    """One client per registry for the whole process: its connections, token and knowledge of what
    it uploaded carry over from the preflight and the early upload to the manifest push."""
    from ...registry import Registry  # imported here: requests is slow to import and often unneeded

    key = (ref.api_host, opts.insecure, opts.ca_dir)
    if key not in _clients:
        _clients[key] = Registry(ref.api_host, insecure=opts.insecure, ca_dir=opts.ca_dir)
    return _clients[key]


class RegistrySource:
    def __init__(self, ref: RegistryRef, store: Layout, opts: RegistryOptions, on_progress: OnProgress,
                 cache: ChunkCache | None = None) -> None:
        self.ref, self.layout, self.options, self._on_progress = ref, store, opts, on_progress
        self.origin = "ckpt"
        self.cache = cache if cache is not None and cache.enabled else None
        self._reg = client(ref, opts)
        self._fetcher: Any = None
        self._complete = False
        self._session = False
        manifest, self._index_annotations = self._resolve()
        with disk_errors("could not store the pulled checkpoint"):
            stored = store.put_bytes(manifest.data, manifest.media_type)
        parsed = Manifest.from_bytes(manifest.data)
        self.descriptor = Descriptor(manifest.media_type, stored.digest, stored.size,
                                     artifact_type=parsed.artifact_type or parsed.config.media_type)

    @property
    def plain_http(self) -> bool:
        """Whether the registry speaks plain http (found when the manifest was fetched): another
        client of it need not try https first."""
        return self._reg.base_url.startswith("http://")

    def _resolve(self) -> tuple[Any, dict[str, str]]:
        """The manifest the reference names (for an index, the one for this host's platform), and
        the index's annotations."""
        from ...registry.manifests import fetch_manifest
        from ...registry.pull import choose_manifest

        ref = self.ref
        got = fetch_manifest(self._reg, ref.repository, ref.reference, expected=ref.digest)
        assert got is not None
        if got.media_type not in mt.INDEX_TYPES:
            return got, {}
        index = Index.from_bytes(got.data)
        chosen = choose_manifest(index, None, str(ref))
        child = fetch_manifest(self._reg, ref.repository, chosen.digest)
        assert child is not None
        if len(child.data) != chosen.size:
            raise CorruptData(f"manifest {chosen.digest} has {len(child.data)} bytes; the index says {chosen.size}")
        return child, dict(index.annotations)

    def read_manifest(self, desc: Descriptor) -> Manifest:
        return self.layout.read_manifest(desc)

    def read_blob(self, desc: Descriptor) -> bytes:
        self._fetch(desc)
        return self.layout.read_blob(desc)

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        self._fetch(desc)
        return self.layout.open_blob(desc)

    def _fetch(self, desc: Descriptor) -> None:
        """Bring `desc` into the store unless it is there: from the cache, or else from the registry
        (streamed, verified before it is kept, and then kept in the cache too)."""
        if self.layout.has_blob(desc.digest):
            return
        self._writing_session()
        if self.cache is not None and self.cache.lend(desc.digest, self.layout):
            return
        if self._fetcher is None:
            from ...lazy.registry_source import RegistrySource as Fetcher

            self._fetcher = Fetcher(self._reg, self.ref.repository)
        with disk_errors("could not store the pulled checkpoint"):
            self._fetcher.fetch_into(desc, self.layout)
        if self.cache is not None:
            self.cache.adopt(self.layout.blob_path(desc.digest), desc.digest)

    def _writing_session(self) -> None:
        """Open the store's writing session (oci/layout.py) before a blob is linked into it from the
        cache: its gc then keeps every blob as new as the session, as for a blob written."""
        if not self._session:
            self.layout.writer().abort()
            self._session = True

    def complete(self, prefetch: Prefetch | None = None) -> Layout:
        if self._complete:
            return self.layout
        from ...registry import pull

        blobs = self.layout.read_manifest(self.descriptor).blobs()
        if self.cache is not None:  # the pull fetches only what the store lacks
            self._writing_session()
            for blob in blobs:
                self.cache.lend(blob.digest, self.layout)
        pinned = self.ref.with_reference(tag=self.ref.tag, digest=self.descriptor.digest)
        with phase("pull"), disk_errors("could not store the pulled checkpoint"):
            pull(pinned, self.layout, registry=self._reg, jobs=self.options.jobs, on_progress=self._on_progress,
                 on_manifest=prefetch.on_manifest if prefetch else None,
                 on_blob=prefetch.on_blob if prefetch else None)
        origins.remember(self.layout.root, self.ref)
        if self.cache is not None:
            for blob in blobs:
                self.cache.adopt(self.layout.blob_path(blob.digest), blob.digest)
        self._complete = True
        return self.layout

    def index_annotations(self) -> dict[str, str]:
        return self._index_annotations


class RegistrySink:
    local = False

    def __init__(self, ref: RegistryRef, opts: RegistryOptions, on_progress: OnProgress,
                 store_root: Path | None) -> None:
        """`store_root`: the store that remembers where its blobs were pushed (origins.py); by
        default the layout a checkpoint is published from."""
        self.ref, self._opts, self._on_progress, self._store_root = ref, opts, on_progress, store_root

    def _remembered_in(self, layout: Layout) -> Path:
        return self._store_root or layout.root

    def preflight(self) -> None:
        if self.ref.digest:
            raise UsageError("push to a tag, not a digest")
        client(self.ref, self._opts).ping()

    @contextmanager
    def early_upload(self, layout: Layout) -> Iterator[OnBlob | None]:
        from ...registry import BlobUploader

        uploader = BlobUploader(layout, self.ref, registry=client(self.ref, self._opts), jobs=self._opts.jobs,
                                on_progress=self._on_progress,
                                mount_from=origins.sources(self._remembered_in(layout), self.ref))
        try:
            yield uploader.submit
            uploader.finish()
        finally:
            uploader.abort()

    def publish(self, layout: Layout, desc: Descriptor) -> Descriptor:
        from ...registry import push

        if self.ref.digest:
            raise UsageError("push to a tag, not a digest")
        remember = self._remembered_in(layout)
        pushed = push(layout, desc, self.ref, registry=client(self.ref, self._opts), jobs=self._opts.jobs,
                      on_progress=self._on_progress, mount_from=origins.sources(remember, self.ref))
        origins.remember(remember, self.ref)
        return pushed


def publish(layout: Layout, desc: Descriptor, dest: RegistryRef, *, registry: RegistryOptions = RegistryOptions(),
            on_progress: OnProgress = noop, store_root: Path | None = None) -> Descriptor:
    """Push `desc` (whose blobs are in `layout`) to `dest`, the tag last."""
    return RegistrySink(dest, registry, on_progress, store_root).publish(layout, desc)
