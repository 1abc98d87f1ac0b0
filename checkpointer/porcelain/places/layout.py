"""Checkpoints in an OCI image layout: the local store ($CKPT_HOME/store) and `oci:PATH` directories."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from ...errors import NotFound, UsageError
from ...format.write import OnBlob
from ...oci.digest import VerifyingReader
from ...oci.layout import Layout
from ...oci.model import Descriptor, Manifest
from ...reference import LayoutRef, StoreRef
from ..home import Home, disk_errors
from .base import Prefetch


class LayoutSource:
    """Reads from a layout that already holds every blob. `durable`: the layout outlives the command
    (the store, an `oci:` directory), unlike a scratch layout an archive or another engine's
    checkpoint was converted into."""

    def __init__(self, layout: Layout, descriptor: Descriptor, origin: str = "ckpt", *,
                 durable: bool = True) -> None:
        self.layout, self.descriptor, self.origin, self.durable = layout, descriptor, origin, durable

    def read_manifest(self, desc: Descriptor) -> Manifest:
        return self.layout.read_manifest(desc)

    def read_blob(self, desc: Descriptor) -> bytes:
        return self.layout.read_blob(desc)

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        return self.layout.open_blob(desc)

    def complete(self, prefetch: Prefetch | None = None) -> Layout:
        return self.layout

    def index_annotations(self) -> dict[str, str]:
        return {}


@contextmanager
def open_store(ref: StoreRef, home: Home) -> Iterator[LayoutSource]:
    store = home.store()
    if ref.digest:
        found = next((desc for _, desc in store.refs() if desc.digest == ref.digest), None)
        if found is None:
            raise NotFound(f"no checkpoint with digest {ref.digest} in the local store")
        yield LayoutSource(store, found)
        return
    yield LayoutSource(store, store.resolve(ref.ref_name))


@contextmanager
def open_layout(ref: LayoutRef) -> Iterator[LayoutSource]:
    layout = Layout(ref.path)
    yield LayoutSource(layout, layout.resolve(ref.tag))


def copy_blobs(src: Layout, dst: Layout, desc: Descriptor) -> None:
    """Copy a manifest and its blobs between layouts, verifying each as it is read."""
    manifest = src.read_manifest(desc)
    for blob in (*manifest.blobs(), desc):
        if dst.has_blob(blob.digest):
            continue
        with src.open_blob(blob) as reader, dst.writing() as writer:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
            writer.commit(blob.media_type, expected=blob.digest)


class StoreSink:
    """A tag in the local store. A checkpoint packed elsewhere is copied in first."""

    local = True

    def __init__(self, ref: StoreRef, home: Home) -> None:
        self.ref, self.home = ref, home

    def preflight(self) -> None:
        if self.ref.digest:
            raise UsageError("a destination names a tag, not a digest")

    def early_upload(self, layout: Layout) -> nullcontext[OnBlob | None]:
        return nullcontext(None)

    def publish(self, layout: Layout, desc: Descriptor) -> Descriptor:
        self.preflight()
        store = self.home.store()
        if layout.root != store.root:
            with disk_errors("could not copy the checkpoint into the local store"):
                copy_blobs(layout, store, desc)
        store.tag(self.ref.ref_name, desc)
        return desc


class LayoutSink:
    """A tag in an `oci:` layout directory (made if missing)."""

    local = False

    def __init__(self, ref: LayoutRef) -> None:
        self.ref = ref

    def preflight(self) -> None:
        pass

    def early_upload(self, layout: Layout) -> nullcontext[OnBlob | None]:
        return nullcontext(None)

    def publish(self, layout: Layout, desc: Descriptor) -> Descriptor:
        with disk_errors(f"could not write the layout {self.ref.path}"):
            target = Layout(self.ref.path, create=True)
            copy_blobs(layout, target, desc)
            target.tag(self.ref.tag, desc)
        return desc
