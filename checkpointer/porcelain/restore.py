"""`ckpt restore`: bring a checkpoint back as a running runc or Podman container, or a bare process
tree, on this or another host. One pipeline for every engine and every place:

    source -> checkpoint (manifest and config only) -> engine and its refusal -> name free?
           -> host compatible? -> every blob here (unpacked while it downloads) -> engine.restore

From a registry, nothing but the manifest, the config (and the runtime spec, to explain a refusal)
is fetched before the checks: a host that cannot take the checkpoint refuses before the memory
moves. Everything the restore creates is removed again if a step fails or is interrupted.

A lazy restore (`--lazy`, runc) forks its page supervisor first, before any thread runs, then
follows the same checks (and why this checkpoint cannot be restored lazily), and instead of every
blob fetches only the CRIU images, the runtime spec and the root filesystem: the container runs
as soon as CRIU has rebuilt its processes, and the supervisor (porcelain/deliveries.py) brings its
memory in afterwards, until every page is in.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import UsageError
from ..format import roles
from ..format.read import Checkpoint
from ..format.source import BlobSource
from ..lazy.chunks import ChunkMap
from ..lazy.job import SourceSpec
from ..progress import OnProgress, noop
from ..reference import parse
from . import engines
from .cache import trim_cache
from .deliveries import LazyPages, Record
from .engines.base import Context, Engine, Restored, Staged
from .home import Home
from .hostcheck import refuse_incompatible
from .places import Opened, RegistryOptions, Source, chunk_source, read_checkpoint
from .prefetch import ImagePrefetch


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    name: str | None = None  # default: the checkpoint's container
    engine: str | None = None  # default: the engine that made the checkpoint
    runc_root: Path | None = None
    force: bool = False  # restore even on a host that looks incompatible
    if_running: bool = False  # succeed, doing nothing, when a container of that name runs already
    decrypt_keys: tuple[Any, ...] = ()
    lazy: bool = False  # run before the memory is here: a page supervisor brings it in afterwards
    lazy_deadline: float | None = None  # seconds a page may wait for the registry (default 30)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    container: str
    pid: int
    bundle: Path | None  # runc only: where the restored container's bundle lives
    digest: str
    already_running: bool = False
    engine: str = "runc"
    warnings: tuple[str, ...] = ()  # what did not come back as it was (the container runs)
    delivery: str | None = None  # a lazy restore: its page delivery (`ckpt status`), still under way


def restore(ref: str, request: RestoreRequest = RestoreRequest(), *, home: Home | None = None,
            registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> RestoreResult:
    home = home or Home()
    engines.check_name(request.engine)
    ctx = Context(home, on_progress, request.runc_root, registry.insecure)
    # First: the supervisor is forked while no thread runs yet.
    pages = LazyPages(home, deadline=request.lazy_deadline) if request.lazy else None
    try:
        return _restore(ref, request, home, ctx, registry, pages)
    finally:
        if pages is not None:
            pages.abandon()  # nothing, once the restore went through; else nothing is left of it


def _restore(ref: str, request: RestoreRequest, home: Home, ctx: Context, registry: RegistryOptions,
             pages: LazyPages | None) -> RestoreResult:
    lazy = pages is not None
    with ImagePrefetch(home) as prefetch, \
            read_checkpoint(parse(ref), home, registry=registry, on_progress=ctx.on_progress,
                            decrypt_keys=() if lazy else request.decrypt_keys, need_plaintext=not lazy) as opened:
        checkpoint = opened.checkpoint
        engine = engines.for_restore(checkpoint, request.engine, ctx)
        refuse_unrestorable(engine, opened.source, checkpoint)
        if pages is not None:
            pages.source = lazy_source(engine, opened, home)
        name = engine.restored_name(request.name, checkpoint)
        with engine.lock(name):
            restored = engine.occupant(name, checkpoint, request.if_running)
            if restored is None:
                refuse_incompatible(checkpoint.config, force=request.force)
                if pages is not None:
                    assert isinstance(engine, LazyEngine)
                    pages.describe(Record(name, engine.name, ref, checkpoint.descriptor.digest,
                                          str(home.bundle_path(name)), time.time()))
                    restored = engine.restore_lazy(opened.source, checkpoint, name, pages)
                else:
                    layout = opened.source.complete(prefetch)
                    restored = engine.restore(layout, checkpoint, name, staged(prefetch, checkpoint))
                    trim_cache(home)
    return RestoreResult(restored.container, restored.pid, restored.bundle, checkpoint.descriptor.digest,
                         already_running=restored.already_running, engine=engine.name, warnings=restored.warnings,
                         delivery=pages.id if pages is not None and not restored.already_running else None)


@runtime_checkable
class LazyEngine(Protocol):
    """An engine that can restore a container before its memory is here (runc)."""

    name: str

    def restore_lazy(self, source: BlobSource, checkpoint: Checkpoint, name: str, pages: LazyPages) -> Restored: ...


def lazy_source(engine: Engine, opened: Opened, home: Home) -> SourceSpec:
    """Where the page supervisor reads the memory from; UsageError saying why this checkpoint cannot
    be restored lazily (before anything is fetched but its manifest and config)."""
    refuse_encrypted(opened.checkpoint)
    if not isinstance(engine, LazyEngine):
        raise UsageError(f"the {engine.name} engine cannot restore lazily: ckpt serves the memory to CRIU's "
                         "lazy-pages daemon beside `runc restore --lazy-pages`, which only runc containers have here",
                         hint="restore it without --lazy")
    return pages_source(opened.checkpoint, opened.source, home)


def refuse_encrypted(checkpoint: Checkpoint, whose: str = "") -> None:
    """UsageError if `checkpoint` is encrypted (`whose`: which one, in a pod)."""
    if checkpoint.manifest.encrypted:
        raise UsageError(f"{whose}an encrypted checkpoint cannot be restored lazily: its memory would have to be "
                         "decrypted by the page supervisor, a background process that outlives this command, and "
                         "ckpt does not hand private keys (or the layers' keys) to a process of its own making",
                         hint="restore it without --lazy (with --decrypt-key)")


def pages_source(checkpoint: Checkpoint, source: Source, home: Home) -> SourceSpec:
    """Where a page supervisor reads the memory of `checkpoint`, read through `source`, from;
    UsageError if the memory is not in address-aligned chunks or `source` cannot serve them."""
    ChunkMap(list(checkpoint.layers(roles.PAGES)))
    return chunk_source(source, home)


def refuse_unrestorable(engine: Engine, source: Source, checkpoint: Checkpoint) -> None:
    """UsageError saying precisely why `engine` cannot restore `checkpoint`, and what would."""

    def spec() -> dict | None:
        layer = checkpoint.layer(roles.SPEC)
        try:
            found = json.loads(source.read_blob(layer)) if layer is not None else None
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    problem = engine.why_not(checkpoint, spec)
    if problem:
        raise UsageError(problem, hint=engines.hint(checkpoint, engine.name))


def staged(prefetch: ImagePrefetch, checkpoint: Checkpoint) -> Staged:
    rootfs = checkpoint.layer(roles.ROOTFS)
    return Staged(images=prefetch.images_for(checkpoint.manifest),
                  rootfs=prefetch.rootfs_for(rootfs) if rootfs is not None else None)
