"""Turn a REF into a place to read a checkpoint from or write one to.

Everything is read through a Layout: a registry ref is pulled into the local store first (so
every blob is verified before use), an oci: ref is opened where it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound, UsageError
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress, noop
from ..reference import ArchiveRef, LayoutRef, Ref, RegistryRef, StoreRef
from .home import Home


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    insecure: bool = False
    ca_dir: Path | None = None
    jobs: int = 4


def _registry(ref: RegistryRef, opts: RegistryOptions):  # noqa: ANN202 - lazy import keeps startup fast
    from ..registry import Registry

    return Registry(ref.api_host, insecure=opts.insecure, ca_dir=opts.ca_dir)


def resolve_source(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
                   on_progress: OnProgress = noop) -> tuple[Layout, Descriptor]:
    """The layout that holds `ref`'s manifest (and, after this returns, all its blobs)."""
    if isinstance(ref, StoreRef):
        store = home.store()
        if ref.digest:
            for _, desc in store.refs():
                if desc.digest == ref.digest:
                    return store, desc
            raise NotFound(f"no checkpoint with digest {ref.digest} in the local store")
        return store, store.resolve(ref.ref_name)
    if isinstance(ref, LayoutRef):
        layout = Layout(ref.path)
        return layout, layout.resolve(ref.tag)
    if isinstance(ref, RegistryRef):
        from ..registry import pull

        store = home.store()
        desc = pull(ref, store, registry=_registry(ref, registry), jobs=registry.jobs, on_progress=on_progress)
        return store, desc
    raise UsageError(f"reading checkpoint archives ({ref}) is not supported yet",
                     hint="use a store name, a registry reference or oci:PATH")


def publish(layout: Layout, desc: Descriptor, dest: Ref, *, registry: RegistryOptions = RegistryOptions(),
            on_progress: OnProgress = noop) -> Descriptor:
    """Make `desc` (whose blobs are in `layout`) reachable under `dest`; the tag is written last."""
    if isinstance(dest, StoreRef):
        if dest.digest:
            raise UsageError("a destination names a tag, not a digest")
        layout.tag(dest.ref_name, desc)
        return desc
    if isinstance(dest, LayoutRef):
        target = Layout(dest.path, create=True)
        copy_blobs(layout, target, desc)
        target.tag(dest.tag, desc)
        return desc
    if isinstance(dest, RegistryRef):
        from ..registry import push

        if dest.digest:
            raise UsageError("push to a tag, not a digest")
        return push(layout, desc, dest, registry=_registry(dest, registry), jobs=registry.jobs,
                    on_progress=on_progress)
    assert isinstance(dest, ArchiveRef)
    raise UsageError(f"writing checkpoint archives ({dest}) is not supported yet",
                     hint="use a store name, a registry reference or oci:PATH")


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
