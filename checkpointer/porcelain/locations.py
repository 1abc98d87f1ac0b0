"""Turn a REF into a place to read a checkpoint from or write one to.

Everything is read through a Layout: a registry ref is pulled into the local store first (so
every blob is verified before use), an oci: ref is opened where it is. open_source() also reads
other engines' checkpoints (images and archives), converted into ckpt's format on the way.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Mapping

from ..errors import NotFound, UsageError
from ..format.read import Checkpoint, is_checkpoint, open_checkpoint
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import Descriptor, Index
from ..progress import OnProgress, noop
from ..timing import phase
from ..reference import ArchiveRef, LayoutRef, Ref, RegistryRef, StoreRef
from . import origins
from .home import Home, disk_errors


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    insecure: bool = False
    ca_dir: Path | None = None
    jobs: int = 4


_clients: dict[tuple[str, bool, Path | None], Any] = {}


@contextmanager
def _registry(ref: RegistryRef, opts: RegistryOptions) -> Iterator[Any]:
    """One client per registry for the whole process: its connections, token and knowledge of
    what it uploaded carry over from the early upload to the manifest push."""
    from ..registry import Registry  # imported here: requests is slow to import and often unneeded

    key = (ref.api_host, opts.insecure, opts.ca_dir)
    if key not in _clients:
        _clients[key] = Registry(ref.api_host, insecure=opts.insecure, ca_dir=opts.ca_dir)
    yield _clients[key]


def resolve_source(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
                   on_progress: OnProgress = noop, prefetch: Any = None) -> tuple[Layout, Descriptor]:
    """The layout that holds `ref`'s manifest (and, after this returns, all its blobs). A registry
    pull tells `prefetch` (an ImagePrefetch) of the manifest and of each blob as it lands."""
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
        with _registry(ref, registry) as reg, phase("pull"), \
                disk_errors("could not store the pulled checkpoint"):
            desc = pull(ref, store, registry=reg, jobs=registry.jobs, on_progress=on_progress,
                        on_manifest=prefetch.on_manifest if prefetch else None,
                        on_blob=prefetch.on_blob if prefetch else None)
        origins.remember(store.root, ref)
        return store, desc
    raise UsageError(f"{ref} is a checkpoint archive, which is read through open_source()")


@dataclass(frozen=True, slots=True)
class Source:
    """A checkpoint ready to read: in ckpt's format, whatever format `origin` it came in."""

    layout: Layout
    descriptor: Descriptor
    checkpoint: Checkpoint
    origin: str  # "ckpt", or the other engine's format it was converted from (compat/read.py)


@contextmanager
def open_source(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
                on_progress: OnProgress = noop, decrypt_keys: Sequence[Any] = (),
                need_plaintext: bool = True, prefetch: Any = None) -> Iterator[Source]:
    """Open `ref` as a ckpt checkpoint. Another engine's checkpoint (an image or an archive) is
    converted into a scratch layout that lives as long as the context. An encrypted one is
    decrypted with `decrypt_keys` (the plaintext manifest is left untagged, so gc takes it);
    without keys it is refused, unless `need_plaintext` is false (inspect shows its config)."""
    if isinstance(ref, ArchiveRef):
        from ..compat.read import archive_to_ckpt

        with home.workdir("import-") as work:
            layout = Layout(work / "layout", create=True)
            desc, origin = archive_to_ckpt(ref.path, layout, work / "archive", on_progress=on_progress)
            yield Source(layout, desc, open_checkpoint(layout, desc), origin)
        return
    layout, desc = resolve_source(ref, home, registry=registry, on_progress=on_progress, prefetch=prefetch)
    if desc.media_type not in mt.INDEX_TYPES:
        desc = _decrypted(layout, desc, decrypt_keys, need_plaintext)
    if desc.media_type not in mt.INDEX_TYPES and is_checkpoint(layout.read_manifest(desc)):
        yield Source(layout, desc, open_checkpoint(layout, desc), "ckpt")
        return
    from ..compat.read import image_to_ckpt

    def index_annotations() -> Mapping[str, str]:
        return _index_annotations(ref, registry) if isinstance(ref, RegistryRef) else {}

    with home.workdir("import-") as work:
        out = Layout(work / "layout", create=True)
        new, origin = image_to_ckpt(layout, desc, out, work / "archive", index_annotations=index_annotations,
                                    on_progress=on_progress)
        yield Source(out, new, open_checkpoint(out, new), origin)


def _decrypted(layout: Layout, desc: Descriptor, keys: Sequence[Any], need_plaintext: bool) -> Descriptor:
    manifest = layout.read_manifest(desc)
    if not manifest.encrypted:
        return desc
    from ..crypt import KeyRequired, decrypt_manifest

    if keys:
        return decrypt_manifest(layout, desc, keys)
    if need_plaintext:
        raise KeyRequired("this checkpoint is encrypted", hint="give the private key with --decrypt-key KEY.pem")
    return desc


def _index_annotations(ref: RegistryRef, opts: RegistryOptions) -> Mapping[str, str]:
    """The annotations of the index a registry tag points at (pull() hands back its manifest)."""
    from ..registry.manifests import fetch_manifest

    with _registry(ref, opts) as reg:
        got = fetch_manifest(reg, ref.repository, ref.reference, ok_missing=True)
    if got is None or got.media_type not in mt.INDEX_TYPES:
        return {}
    return Index.from_bytes(got.data).annotations


def publish(layout: Layout, desc: Descriptor, dest: Ref, *, registry: RegistryOptions = RegistryOptions(),
            on_progress: OnProgress = noop, store_root: Path | None = None) -> Descriptor:
    """Make `desc` (whose blobs are in `layout`) reachable under `dest`; the tag is written last.
    `store_root` is the store whose registry pushes are remembered, when `layout` is a scratch one."""
    if isinstance(dest, StoreRef):
        if dest.digest:
            raise UsageError("a destination names a tag, not a digest")
        layout.tag(dest.ref_name, desc)
        return desc
    if isinstance(dest, LayoutRef):
        with disk_errors(f"could not write the layout {dest.path}"):
            target = Layout(dest.path, create=True)
            copy_blobs(layout, target, desc)
            target.tag(dest.tag, desc)
        return desc
    if isinstance(dest, RegistryRef):
        from ..registry import push

        if dest.digest:
            raise UsageError("push to a tag, not a digest")
        with _registry(dest, registry) as reg:
            pushed = push(layout, desc, dest, registry=reg, jobs=registry.jobs, on_progress=on_progress,
                          mount_from=origins.sources(store_root or layout.root, dest))
        origins.remember(store_root or layout.root, dest)
        return pushed
    assert isinstance(dest, ArchiveRef)
    from ..compat.write_archive import export_archive

    export_archive(layout, desc, dest.path, on_progress=on_progress)
    return desc


def preflight(dest: Ref, *, registry: RegistryOptions = RegistryOptions()) -> None:
    """Fail early, before anything is dumped, when a registry destination cannot be reached or
    refuses our credentials."""
    if isinstance(dest, RegistryRef):
        with _registry(dest, registry) as reg:
            reg.ping()


@contextmanager
def early_upload(dests: list[Ref], layout: Layout, *, registry: RegistryOptions = RegistryOptions(),
                 on_progress: OnProgress = noop, store_root: Path | None = None
                 ) -> Iterator[Callable[[Descriptor, bytes | None], None] | None]:
    """While a checkpoint is being written, upload each finished blob to the (first) registry
    destination at once; the manifest and tag still come only from publish(), afterwards.
    Yields the callback to hand each stored blob to, or None when no registry is involved."""
    target = next((d for d in dests if isinstance(d, RegistryRef)), None)
    if target is None:
        yield None
        return
    from ..registry import BlobUploader

    with _registry(target, registry) as reg:
        uploader = BlobUploader(layout, target, registry=reg, jobs=registry.jobs, on_progress=on_progress,
                                mount_from=origins.sources(store_root or layout.root, target))
        try:
            yield uploader.submit
            uploader.finish()
        finally:
            uploader.abort()


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


def default_store_ref(src: Ref) -> StoreRef:
    """The local name a pulled checkpoint gets: the repository's last part and its tag."""
    if isinstance(src, RegistryRef):
        return StoreRef(src.repository.rsplit("/", 1)[-1], src.tag or "latest")
    if isinstance(src, LayoutRef):
        return StoreRef(src.path.name.lower() or "checkpoint", src.tag)
    raise UsageError(f"name a destination for {src}")
