"""The pod engines by name: a save asks for_save() which engine has the pod, a restore asks
for_restore() which engine takes the pod checkpoint."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ...errors import MissingDependency, NotFound, UsageError
from ...format.pod import PodCheckpoint
from ..engines.base import Context
from .model import PodEngine


def _imported(module: str, cls: str) -> Callable[[Context], PodEngine]:
    def make(ctx: Context) -> PodEngine:
        engine: PodEngine = getattr(import_module(f".{module}", __package__), cls)(ctx)
        return engine

    return make


_ENGINES: dict[str, Callable[[Context], PodEngine]] = {
    "runc": _imported("runc", "RuncPods"),
    "podman": _imported("podman", "PodmanPods"),
}
NAMES = tuple(_ENGINES)


def get(name: str, ctx: Context) -> PodEngine:
    if name not in _ENGINES:
        raise UsageError(f"ckpt saves and restores pods of {' and '.join(NAMES)}, not {name!r}",
                         hint=f"--engine {' or '.join(NAMES)}")
    return _ENGINES[name](ctx)


def for_save(pod: str, name: str | None, ctx: Context) -> PodEngine:
    """The engine to checkpoint pod `pod` with: `name` if given, else the first that has it."""
    if name is not None:
        return get(name, ctx)
    missing: list[MissingDependency] = []
    for candidate in NAMES:
        try:
            engine = get(candidate, ctx)
            if engine.knows(pod):
                return engine
        except MissingDependency as exc:
            missing.append(exc)
    if len(missing) == len(NAMES):
        raise missing[0]
    where = f" under {ctx.runc_root}" if ctx.runc_root else ""
    raise NotFound(f"no pod {pod!r}: no runc sandbox container of that id or pod name{where}, and no Podman pod",
                   hint="`runc list` and `podman pod ps` show them; a runc pod is named by its sandbox's id or "
                        "by the sandbox's dev.ckpt.pod.name annotation")


def for_restore(pod: PodCheckpoint, name: str | None, ctx: Context) -> PodEngine:
    """The engine that restores `pod`: `name` if given, else the one that made it (runc for the pods
    of engines ckpt does not drive)."""
    engine = name or pod.config.engine
    return get(engine if engine in _ENGINES else "runc", ctx)
