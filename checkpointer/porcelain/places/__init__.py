"""Where checkpoints are read from and written to. open_source() and open_sink() pick the place by
the reference's type (the REF grammar, reference.py): the local store, an `oci:` layout, a registry
or an archive file. read_checkpoint() opens any of them as a ckpt checkpoint, converting another
engine's format and decrypting on the way."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import singledispatch
from typing import Any

from ...errors import UsageError
from ...format.read import is_checkpoint, open_checkpoint
from ...lazy.job import SourceSpec
from ...oci import mediatypes as mt
from ...oci.layout import Layout
from ...progress import OnProgress, noop
from ...reference import ArchiveRef, LayoutRef, Ref, RegistryRef, StoreRef
from ..home import Home
from .archive import ArchiveSink, open_archive
from .base import Opened, Prefetch, RegistryOptions, Sink, Source
from .layout import LayoutSink, LayoutSource, StoreSink, copy_blobs, open_layout, open_store
from .registry import RegistrySink, RegistrySource

__all__ = ["Opened", "Prefetch", "RegistryOptions", "Sink", "Source", "chunk_source", "copy_blobs",
           "local_name_for", "open_sink", "open_source", "read_checkpoint"]


Reading = AbstractContextManager[Source]


@singledispatch
def _source(ref: Any, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Reading:
    raise UsageError(f"cannot read a checkpoint from {ref}")


@_source.register
def _(ref: StoreRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Reading:
    return open_store(ref, home)


@_source.register
def _(ref: LayoutRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Reading:
    return open_layout(ref)


@_source.register
def _(ref: RegistryRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Reading:
    from ..cache import open_cache

    return nullcontext(RegistrySource(ref, home.store(), registry, on_progress, open_cache(home)))


@_source.register
def _(ref: ArchiveRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Reading:
    return open_archive(ref, home, on_progress)


def open_source(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
                on_progress: OnProgress = noop) -> Reading:
    """The place `ref` names, to read from, as it is (another engine's archive is converted into a
    scratch layout that lives as long as the context)."""
    return _source(ref, home, registry, on_progress)


@singledispatch
def _sink(ref: Any, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Sink:
    raise UsageError(f"cannot write a checkpoint to {ref}")


@_sink.register
def _(ref: StoreRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Sink:
    return StoreSink(ref, home)


@_sink.register
def _(ref: LayoutRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Sink:
    return LayoutSink(ref)


@_sink.register
def _(ref: RegistryRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Sink:
    return RegistrySink(ref, registry, on_progress, home.store_path)


@_sink.register
def _(ref: ArchiveRef, home: Home, registry: RegistryOptions, on_progress: OnProgress) -> Sink:
    return ArchiveSink(ref, on_progress)


def open_sink(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
              on_progress: OnProgress = noop) -> Sink:
    """The place `ref` names, to publish at (nothing is touched until preflight or publish)."""
    return _sink(ref, home, registry, on_progress)


@contextmanager
def read_checkpoint(ref: Ref, home: Home, *, registry: RegistryOptions = RegistryOptions(),
                    on_progress: OnProgress = noop, decrypt_keys: Sequence[Any] = (),
                    need_plaintext: bool = True) -> Iterator[Opened]:
    """Open `ref` as a ckpt checkpoint. Another engine's checkpoint (an image or an archive) is
    converted into a scratch layout that lives as long as the context. An encrypted one is pulled
    whole and decrypted with `decrypt_keys` (its plaintext manifest is left untagged, so gc takes
    it); without keys it is refused, unless `need_plaintext` is false (inspect shows its config)."""
    with open_source(ref, home, registry=registry, on_progress=on_progress) as source:
        if source.descriptor.media_type not in mt.INDEX_TYPES:
            source = _decrypted(source, decrypt_keys, need_plaintext)
            if is_checkpoint(source.read_manifest(source.descriptor)):
                yield Opened(source, open_checkpoint(source, source.descriptor))
                return
        from ...compat.read import image_to_ckpt

        layout = source.complete()
        with home.workdir("import-") as work:
            out = Layout(work / "layout", create=True)
            new, origin = image_to_ckpt(layout, source.descriptor, out, work / "archive",
                                        index_annotations=source.index_annotations, on_progress=on_progress)
            converted = LayoutSource(out, new, origin, durable=False)
            yield Opened(converted, open_checkpoint(converted, new))


def _decrypted(source: Source, keys: Sequence[Any], need_plaintext: bool) -> Source:
    if not source.read_manifest(source.descriptor).encrypted:
        return source
    from ...crypt import KeyRequired, decrypt_manifest

    if keys:
        layout = source.complete()
        # The plaintext manifest is left untagged in the store: gc may take it once this command ends.
        return LayoutSource(layout, decrypt_manifest(layout, source.descriptor, keys), source.origin, durable=False)
    if need_plaintext:
        raise KeyRequired("this checkpoint is encrypted", hint="give the private key with --decrypt-key KEY.pem")
    return source


@singledispatch
def local_name_for(ref: Any) -> StoreRef:
    """The local name a copied checkpoint gets when none is given."""
    raise UsageError(f"name a destination for {ref}")


@local_name_for.register
def _(ref: RegistryRef) -> StoreRef:
    return StoreRef(ref.repository.rsplit("/", 1)[-1], ref.tag or "latest")


@local_name_for.register
def _(ref: LayoutRef) -> StoreRef:
    return StoreRef(ref.path.name.lower() or "checkpoint", ref.tag)



@singledispatch
def chunk_source(source: Any, home: Home) -> SourceSpec:
    """Where a lazy restore's page supervisor, a process of its own that outlives this command, reads
    the pages chunks of `source` from; UsageError (why) where it cannot."""
    raise UsageError(f"a checkpoint read from {type(source).__name__} cannot be restored lazily",
                     hint="restore it without --lazy")


@chunk_source.register
def _(source: RegistrySource, home: Home) -> SourceSpec:
    from ..cache import cache_limit, cache_path

    opts = source.options
    return SourceSpec("registry", host=source.ref.api_host, repository=source.ref.repository,
                      insecure=opts.insecure, plain_http=source.plain_http,
                      ca_dir=str(opts.ca_dir) if opts.ca_dir else None,
                      cache=str(cache_path(home)) if source.cache is not None else None,
                      cache_limit=cache_limit(home) if source.cache is not None else None)


@chunk_source.register
def _(source: LayoutSource, home: Home) -> SourceSpec:
    if not source.durable:
        raise UsageError(f"this checkpoint ({source.origin}) was converted or decrypted for this command only, and "
                         "a lazy restore reads its memory after the command has returned",
                         hint="restore it without --lazy, or first store it in ckpt's format: "
                              "`ckpt convert REF NAME`, then `ckpt restore --lazy NAME`")
    return SourceSpec("layout", layout=str(source.layout.root))
