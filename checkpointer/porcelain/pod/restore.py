"""`ckpt restore REF` of a pod checkpoint: the whole pod comes back, its sandbox first, every member
into the sandbox's new namespaces, and they reach each other as before. One pipeline:

    source -> pod (index, pod config, members' manifests and configs) -> engine and its refusal
           -> every member's host check -> every blob here -> engine.restore (names free? sandbox,
              lock, members, unlock; all removed again if a step fails)

From a registry only the manifests and configs move before the checks: a host that cannot take
any member refuses before the memory of any moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from ...progress import OnProgress, noop
from ...reference import Ref
from ..engines.base import Context
from ..home import Home
from ..hostcheck import refuse_incompatible
from ..places import RegistryOptions
from . import engines
from .model import RestoredMember
from .places import OpenedPod, open_pod


@dataclass(frozen=True, slots=True)
class PodRestoreRequest:
    name: str | None = None  # the pod's new name; default: its own (members keep their ids)
    engine: str | None = None  # default: the engine that made it
    runc_root: Path | None = None
    force: bool = False  # restore even on a host that looks incompatible
    lazy: bool = False  # refused: see restore_opened
    if_running: bool = False  # refused: a pod is restored whole, or not at all


@dataclass(frozen=True, slots=True)
class PodRestoreResult:
    pod: str
    digest: str
    engine: str
    members: tuple[RestoredMember, ...]
    origin: str = "ckpt"

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{m.name}: {w}" for m in self.members for w in m.warnings)


def restore_opened(opened: OpenedPod, request: PodRestoreRequest, *, home: Home, registry: RegistryOptions,
                   on_progress: OnProgress = noop) -> PodRestoreResult:
    if request.lazy:
        # Each member's page supervisor would have to be forked before any thread of this process
        # runs, one per member, and the pod's network lock is dropped only once every member is
        # back: a pod restored lazily would wait on its slowest member's faults under that lock.
        raise UsageError("--lazy restores single containers, not pods: a pod comes back with every page here",
                         hint="leave --lazy out, or restore one container of the pod on its own")
    if request.if_running:
        raise UsageError("--if-running-ok goes with a single container, not a pod",
                         hint="a pod is restored whole or not at all; leave --if-running-ok out")
    ctx = Context(home, on_progress, request.runc_root, registry.insecure)
    engine = engines.for_restore(opened.pod, request.engine, ctx)
    if problem := engine.why_not(opened.pod):
        raise UsageError(problem, hint="restore it with the engine that made it (--engine "
                                       f"{opened.pod.config.engine}), or leave --engine out")
    for checkpoint in opened.pod.checkpoints.values():
        refuse_incompatible(checkpoint.config, force=request.force)
    layout = opened.complete()
    restored = engine.restore(layout, opened.pod, request.name)
    return PodRestoreResult(restored.name, opened.descriptor.digest, engine.name, restored.members, opened.origin)


def restore_if_pod(text: str, ref: Ref | None, request: PodRestoreRequest, *, home: Home | None = None,
                   registry: RegistryOptions | None = None, on_progress: OnProgress = noop) -> PodRestoreResult | None:
    """Restore the pod `text` names (parsed: `ref`); None, doing nothing, when it is no pod."""
    home, registry = home or Home(), registry or RegistryOptions()
    with open_pod(text, ref, home, registry=registry, on_progress=on_progress) as opened:
        if opened is None:
            return None
        return restore_opened(opened, request, home=home, registry=registry, on_progress=on_progress)
