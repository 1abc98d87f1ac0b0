"""The engines by name. Nothing outside this package compares engine names: a save asks for_save()
which engine has the container, a restore asks for_restore() which engine takes the checkpoint."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ...errors import MissingDependency, NotFound, UsageError
from ...format import roles
from ...format.read import Checkpoint
from .base import Context, Engine, Target


def _imported(module: str, cls: str) -> Callable[[Context], Engine]:
    """An engine class, imported when first used (each pulls in its runtime's code)."""

    def make(ctx: Context) -> Engine:
        engine: Engine = getattr(import_module(f".{module}", __name__), cls)(ctx)
        return engine

    return make


_ENGINES: dict[str, Callable[[Context], Engine]] = {
    "runc": _imported("runc", "RuncEngine"),
    "podman": _imported("podman", "PodmanEngine"),
    "process": _imported("process", "ProcessEngine"),
}
NAMES = tuple(_ENGINES)


def check_name(name: str | None) -> None:
    if name is not None and name not in _ENGINES:
        raise UsageError(f"unknown engine {name!r}", hint=f"one of: {', '.join(NAMES)}")


def get(name: str, ctx: Context) -> Engine:
    check_name(name)
    return _ENGINES[name](ctx)


def for_save(target: Target, name: str | None, ctx: Context) -> Engine:
    """The engine to checkpoint `target` with: `name` if given, else the one that has the container
    (runc first, then Podman), or the process engine for a pid."""
    check_name(name)
    if target.pid is not None or name == "process":
        if target.pid is None:
            raise UsageError("--engine process needs --pid PID")
        return get("process", ctx)
    if not target.container:
        raise UsageError("name a container to checkpoint, or give --pid PID for a bare process tree")
    return get(name or _detect(target.container, ctx), ctx)


CONTAINER_ENGINES = ("runc", "podman")  # asked in this order which has a container of a given name


def _detect(name: str, ctx: Context) -> str:
    """The first engine that has container `name`."""
    missing: list[MissingDependency] = []
    for candidate in CONTAINER_ENGINES:
        try:
            if get(candidate, ctx).knows(name):
                return candidate
        except MissingDependency as exc:
            missing.append(exc)
    if len(missing) == len(CONTAINER_ENGINES):
        raise missing[0]
    where = f" under {ctx.runc_root}" if ctx.runc_root else ""
    raise NotFound(f"no runc container {name!r}{where}, and no Podman container of that name",
                   hint="`runc list` and `podman ps` show the containers; pass --runc-root if runc keeps "
                        "them elsewhere, or --pid PID for a process that is not in a container")


def default_for(checkpoint: Checkpoint) -> str:
    """The engine a checkpoint goes back into unless told otherwise: the one that made it."""
    engine = checkpoint.config.engine
    if engine == "podman" and not checkpoint.layers(roles.ENGINE) and checkpoint.layer(roles.ROOTFS):
        return "runc"  # published by a runtime hook: a full rootfs and a spec, none of Podman's files
    return engine if engine in _ENGINES else "runc"


def for_restore(checkpoint: Checkpoint, name: str | None, ctx: Context) -> Engine:
    """The engine that restores `checkpoint`: `name` if given, else the one that made it."""
    check_name(name)
    return get(name or default_for(checkpoint), ctx)


def hint(checkpoint: Checkpoint, target: str) -> str:
    """What to do instead when `target` cannot restore `checkpoint`."""
    engine = checkpoint.config.engine
    if engine in _ENGINES and engine != target:
        return f"restore it with --engine {engine}, or leave --engine out"
    if engine == "cri-o":
        return ("restore it with CRI-O: `ckpt convert REF DEST --compat cri-o` makes an image CRI-O restores, "
                "or `ckpt export REF FILE.tar` an archive")
    if engine == "containerd":
        return "restore it with containerd (`ckpt export REF FILE.tar` gives its archive back)"
    return "restore it with the engine that made it"
