"""Where pod checkpoints are read from and published to: the local store, `oci:` layouts and
registries, like single checkpoints (porcelain/places/), and the pod layouts CRI-O and containerd
write (compat/pod_read.py), converted on the way in.

A pod is an index: its members are read through one source per manifest. From a registry each
member is a registry source of its own (its manifest pinned by digest, each blob fetched when
first read), so `ckpt inspect` of a pod moves only configs and CRIU layers; complete() pulls
everything into the store."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path
from typing import Any

from ...errors import NotFound, UsageError
from ...format import pod as podfmt
from ...format.source import BlobSource
from ...oci import mediatypes as mt
from ...oci.layout import Layout
from ...oci.model import Descriptor, Index
from ...progress import OnProgress, noop
from ...reference import ARCHIVE_SUFFIXES, ArchiveRef, LayoutRef, Ref, RegistryRef, StoreRef, parse
from ..home import Home, disk_errors
from ..places import RegistryOptions
from ..places.layout import LayoutSource


@dataclass(frozen=True, slots=True)
class OpenedPod:
    """A pod checkpoint ready to read. `source_for(manifest)` reads one of its manifests' blobs;
    `complete()` brings every blob into one layout."""

    descriptor: Descriptor  # the index
    pod: podfmt.PodCheckpoint
    origin: str  # ckpt, or the pod layout it was converted from (cri-o-pod, containerd-pod, ...)
    reader: Any  # a _LayoutPod or a _RegistryPod

    def source_for(self, desc: Descriptor) -> BlobSource:
        source: BlobSource = self.reader.source_for(desc)
        return source

    def complete(self) -> Layout:
        layout: Layout = self.reader.complete(self.pod)
        return layout


class _LayoutPod:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def source_for(self, desc: Descriptor) -> BlobSource:
        return LayoutSource(self.layout, desc)

    def complete(self, pod: podfmt.PodCheckpoint) -> Layout:
        return self.layout


class _RegistryPod:
    def __init__(self, ref: RegistryRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> None:
        self.ref, self.home, self.registry, self.on_progress = ref, home, registry, on_progress
        self._sources: dict[str, Any] = {}

    def source_for(self, desc: Descriptor) -> BlobSource:
        from ..places.registry import RegistrySource

        if desc.digest not in self._sources:
            pinned = self.ref.with_reference(tag=None, digest=desc.digest)
            self._sources[desc.digest] = RegistrySource(pinned, self.home.store(), self.registry, self.on_progress)
        source: BlobSource = self._sources[desc.digest]
        return source

    def complete(self, pod: podfmt.PodCheckpoint) -> Layout:
        for entry in pod.index.manifests:
            self.source_for(entry).complete()  # type: ignore[attr-defined]
        return self.home.store()


def _pod_index(layout: Layout, desc: Descriptor) -> bool:
    return desc.media_type in mt.INDEX_TYPES and podfmt.is_pod_index(Index.from_bytes(layout.read_blob(desc)))


@singledispatch
def _peek(ref: Any, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Any:
    return None


@_peek.register
def _(ref: StoreRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Any:
    store = home.store()
    if ref.digest:
        desc = next((d for _, d in store.refs() if d.digest == ref.digest), None)
        if desc is None:
            return None
    else:
        try:
            desc = store.resolve(ref.ref_name)
        except NotFound:
            return None
    return (desc, _LayoutPod(store), "ckpt") if _pod_index(store, desc) else None


@_peek.register
def _(ref: LayoutRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Any:
    try:
        layout = Layout(ref.path)
        desc = layout.resolve(ref.tag)
    except NotFound:
        return None
    return (desc, _LayoutPod(layout), "ckpt") if _pod_index(layout, desc) else None


@_peek.register
def _(ref: RegistryRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Any:
    from ...registry.manifests import fetch_manifest
    from ..places.registry import client

    got = fetch_manifest(client(ref, registry), ref.repository, ref.reference, expected=ref.digest)
    if got is None or got.media_type not in mt.INDEX_TYPES or not podfmt.is_pod_index(Index.from_bytes(got.data)):
        return None
    store = home.store()
    with disk_errors("could not store the pulled checkpoint"):
        stored = store.put_bytes(got.data, got.media_type)
    desc = Descriptor(got.media_type, stored.digest, stored.size, artifact_type=podfmt.POD_ARTIFACT)
    return desc, _RegistryPod(ref, home, registry, on_progress), "ckpt"


def ref_or_path(text: str) -> Ref | None:
    """`text` as a REF, or None for an existing directory that is no REF (another engine's pod)."""
    try:
        return parse(text)
    except UsageError:
        if Path(text).is_dir():
            return None
        raise


def is_pod_path(text: str) -> bool:
    """Whether `text` names another engine's pod checkpoint on disk: a directory (CRI-O's and
    containerd's CheckpointPod output) or an archive that holds one (compat/pod_read.py)."""
    from ...compat import pod_read

    path = Path(text)
    if path.is_dir():
        return pod_read.is_pod_dir(path)
    return text.endswith(ARCHIVE_SUFFIXES) and path.is_file() and pod_read.is_pod_archive(path)


@contextmanager
def open_pod(text: str, ref: Ref | None, home: Home, *, registry: RegistryOptions,
             on_progress: OnProgress = noop) -> Iterator[OpenedPod | None]:
    """The pod checkpoint `text` (parsed: `ref`) names, or None when it is not a pod. Another
    engine's pod directory or archive is converted into a scratch layout that lives as long as the
    context."""
    if ref is None or isinstance(ref, ArchiveRef):
        if not is_pod_path(text):
            yield None
            return
        from ...compat import pod_read

        with home.workdir("import-pod-") as work:
            layout = Layout(work / "layout", create=True)
            desc, origin = pod_read.pod_to_ckpt(Path(text), layout, work / "unpacked", on_progress=on_progress)
            yield OpenedPod(desc, podfmt.open_pod(layout, desc), origin, _LayoutPod(layout))
        return
    found = _peek(ref, home, registry, on_progress)
    if found is None:
        yield None
        return
    desc, reader, origin = found
    index_source = LayoutSource(home.store(), desc) if isinstance(reader, _RegistryPod) else reader.source_for(desc)
    yield OpenedPod(desc, podfmt.open_pod(index_source, desc, reader.source_for), origin, reader)


# -- publishing -----------------------------------------------------------------------------------

def copy_tree(src: Layout, dst: Layout, desc: Descriptor) -> None:
    """Copy an index (or manifest) and everything under it between layouts, each blob verified."""
    todo = [desc]
    while todo:
        blob = todo.pop()
        if blob.media_type in mt.INDEX_TYPES:
            todo.extend(Index.from_bytes(src.read_blob(blob)).manifests)
        elif blob.media_type in mt.MANIFEST_TYPES:
            todo.extend(b for b in src.read_manifest(blob).blobs() if b.media_type != mt.OCI_EMPTY
                        or src.has_blob(b.digest))
        if dst.has_blob(blob.digest):
            continue
        with src.open_blob(blob) as reader, dst.writing() as writer:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
            writer.commit(blob.media_type, expected=blob.digest)


@singledispatch
def publish(ref: Any, layout: Layout, desc: Descriptor, home: Home, registry: RegistryOptions,
            on_progress: OnProgress) -> None:
    raise UsageError(f"a pod checkpoint cannot be written to {ref}",
                     hint="write it to the local store, an oci: layout or a registry")


@publish.register
def _(ref: StoreRef, layout: Layout, desc: Descriptor, home: Home, registry: RegistryOptions,
      on_progress: OnProgress) -> None:
    if ref.digest:
        raise UsageError("a destination names a tag, not a digest")
    store = home.store()
    with disk_errors("could not store the pod checkpoint"):
        if layout.root != store.root:
            copy_tree(layout, store, desc)
        store.tag(ref.ref_name, desc)


@publish.register
def _(ref: LayoutRef, layout: Layout, desc: Descriptor, home: Home, registry: RegistryOptions,
      on_progress: OnProgress) -> None:
    with disk_errors(f"could not write the layout {ref.path}"):
        target = Layout(ref.path, create=True)
        copy_tree(layout, target, desc)
        target.tag(ref.tag, desc)


@publish.register
def _(ref: RegistryRef, layout: Layout, desc: Descriptor, home: Home, registry: RegistryOptions,
      on_progress: OnProgress) -> None:
    from ..places.registry import publish as push

    push(layout, desc, ref, registry=registry, on_progress=on_progress, store_root=home.store_path)


def describe(layout: Layout, desc: Descriptor) -> tuple[str, str, int] | None:
    """For `ckpt ls`: (what it holds, when it was made, its bytes) of a pod in `layout`; None for
    anything else."""
    if not _pod_index(layout, desc):
        return None
    pod = podfmt.open_pod(layout, desc)
    members = ", ".join(m.name for m in pod.config.members)
    return f"pod {pod.config.pod.name} ({members})", pod.config.created, stored_sizes(layout, desc)[0]


def stored_sizes(layout: Layout, index: Descriptor) -> tuple[int, int]:
    """(bytes of the pod checkpoint, every blob and manifest once; bytes the members have in common:
    what storing each member on its own would add)."""
    sizes: dict[str, int] = {index.digest: index.size}
    per_member = member_blobs = 0
    seen: set[str] = set()
    for entry in Index.from_bytes(layout.read_blob(index)).manifests:
        sizes[entry.digest] = entry.size
        blobs = layout.read_manifest(entry).blobs()
        sizes.update((blob.digest, blob.size) for blob in blobs)
        if entry.annotations.get(podfmt.ROLE) == podfmt.ROLE_MEMBER:
            per_member += sum(blob.size for blob in blobs)
            member_blobs += sum(blob.size for blob in blobs if blob.digest not in seen)
            seen.update(blob.digest for blob in blobs)
    return sum(sizes.values()), per_member - member_blobs
