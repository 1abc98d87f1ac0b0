"""`ckpt restore`: bring a checkpoint back as a running runc or Podman container, or a bare process
tree, on this or another host. One pipeline for every engine and every place:

    source -> checkpoint (manifest and config only) -> engine and its refusal -> name free?
           -> host compatible? -> every blob here (unpacked while it downloads) -> engine.restore

From a registry, nothing but the manifest, the config (and the runtime spec, to explain a refusal)
is fetched before the checks: a host that cannot take the checkpoint refuses before the memory
moves. Everything the restore creates is removed again if a step fails or is interrupted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..format import roles
from ..format.read import Checkpoint
from ..progress import OnProgress, noop
from ..reference import parse
from . import engines
from .engines.base import Context, Engine, Staged
from .home import Home
from .hostcheck import refuse_incompatible
from .places import RegistryOptions, Source, read_checkpoint
from .prefetch import ImagePrefetch


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    name: str | None = None  # default: the checkpoint's container
    engine: str | None = None  # default: the engine that made the checkpoint
    runc_root: Path | None = None
    force: bool = False  # restore even on a host that looks incompatible
    if_running: bool = False  # succeed, doing nothing, when a container of that name runs already
    decrypt_keys: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class RestoreResult:
    container: str
    pid: int
    bundle: Path | None  # runc only: where the restored container's bundle lives
    digest: str
    already_running: bool = False
    engine: str = "runc"
    warnings: tuple[str, ...] = ()  # what did not come back as it was (the container runs)


def restore(ref: str, request: RestoreRequest = RestoreRequest(), *, home: Home | None = None,
            registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> RestoreResult:
    home = home or Home()
    engines.check_name(request.engine)
    ctx = Context(home, on_progress, request.runc_root, registry.insecure)
    with ImagePrefetch(home) as prefetch, \
            read_checkpoint(parse(ref), home, registry=registry, on_progress=on_progress,
                            decrypt_keys=request.decrypt_keys) as opened:
        checkpoint = opened.checkpoint
        engine = engines.for_restore(checkpoint, request.engine, ctx)
        refuse_unrestorable(engine, opened.source, checkpoint)
        name = engine.restored_name(request.name, checkpoint)
        with engine.lock(name):
            restored = engine.occupant(name, checkpoint, request.if_running)
            if restored is None:
                refuse_incompatible(checkpoint.config, force=request.force)
                layout = opened.source.complete(prefetch)
                restored = engine.restore(layout, checkpoint, name, staged(prefetch, checkpoint))
    return RestoreResult(restored.container, restored.pid, restored.bundle, checkpoint.descriptor.digest,
                         already_running=restored.already_running, engine=engine.name, warnings=restored.warnings)


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
