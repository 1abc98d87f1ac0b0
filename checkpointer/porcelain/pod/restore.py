"""`ckpt restore REF` of a pod checkpoint: the whole pod comes back, its sandbox first, every member
into the sandbox's new namespaces, and they reach each other as before. One pipeline:

    source -> pod (index, pod config, members' manifests and configs) -> engine and its refusal
           -> every member's host check -> every blob here -> engine.restore (names free? sandbox,
              lock, members, unlock; all removed again if a step fails)

With --lazy (runc pods) no memory is fetched before the restore: each member is restored through
`runc restore --lazy-pages` with a page supervisor of its own (porcelain/deliveries.py), which
reads that member's pages chunks from where the pod was read, as a single container's lazy
restore does. The pod's network lock is dropped once every member runs, not once every page is
in: a member touching memory not here yet waits for it, its peers do not.

From a registry only the manifests and configs move before the checks: a host that cannot take
any member refuses before the memory of any moves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from ...errors import UsageError
from ...format.pod import PodCheckpoint
from ...format.read import Checkpoint
from ...format.source import BlobSource
from ...lazy.job import SourceSpec
from ...progress import OnProgress, noop
from ...reference import Ref
from ..deliveries import LazyPages, Record
from ..engines.base import Context
from ..home import Home
from ..hostcheck import refuse_incompatible
from ..places import RegistryOptions
from ..restore import pages_source, refuse_encrypted
from . import engines
from .model import RestoredMember, RestoredPod
from .places import OpenedPod, open_pod


@dataclass(frozen=True, slots=True)
class PodRestoreRequest:
    name: str | None = None  # the pod's new name; default: its own (members keep their ids)
    engine: str | None = None  # default: the engine that made it
    runc_root: Path | None = None
    force: bool = False  # restore even on a host that looks incompatible
    lazy: bool = False  # runc pods: every member restored lazily (a page supervisor each)
    lazy_deadline: float | None = None  # with lazy: how long a page may wait for the source
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


class LazyMembers:
    """Each member of a pod restored lazily: the member's own source (its manifest's blobs, read
    on demand) and a page supervisor started for it, reading its chunks from that source."""

    def __init__(self, opened: OpenedPod, home: Home, ref: str, deadline: float | None) -> None:
        self.opened, self.home, self.ref, self.deadline = opened, home, ref, deadline
        self._served: dict[str, SourceSpec] = {}  # by member manifest digest (refuse_unservable)

    def refuse_unservable(self) -> None:
        """UsageError, before any member is restored, if some member's memory cannot be served
        (each member as a single container's lazy restore checks it); keeps where each is served from."""
        for name, checkpoint in self.opened.pod.checkpoints.items():
            refuse_encrypted(checkpoint, whose=f"member {name!r} of the pod is encrypted, and ")
            source = self.opened.source_for(checkpoint.descriptor)
            self._served[checkpoint.descriptor.digest] = pages_source(checkpoint, source, self.home)

    def start(self, checkpoint: Checkpoint, container: str, bundle: Path) -> tuple[BlobSource, LazyPages]:
        """The member's source, and its page supervisor (started, waiting for its job)."""
        source = self.opened.source_for(checkpoint.descriptor)
        pages = LazyPages(self.home, deadline=self.deadline)
        try:
            pages.source = self._served[checkpoint.descriptor.digest]
            pages.describe(Record(container, "runc", self.ref, checkpoint.descriptor.digest, str(bundle), time.time()))
        except BaseException:
            pages.abandon()
            raise
        return source, pages


def restore_opened(opened: OpenedPod, request: PodRestoreRequest, *, home: Home, registry: RegistryOptions,
                   on_progress: OnProgress = noop, ref: str = "") -> PodRestoreResult:
    if request.if_running:
        raise UsageError("--if-running-ok goes with a single container, not a pod",
                         hint="a pod is restored whole or not at all; leave --if-running-ok out")
    ctx = Context(home, on_progress, request.runc_root, registry.insecure)
    engine = engines.for_restore(opened.pod, request.engine, ctx)
    if problem := engine.why_not(opened.pod):
        raise UsageError(problem, hint="restore it with the engine that made it (--engine "
                                       f"{opened.pod.config.engine}), or leave --engine out")
    lazy = LazyMembers(opened, home, ref, request.lazy_deadline) if request.lazy else None
    if lazy is not None:
        if not isinstance(engine, LazyPodEngine):
            raise UsageError(f"the {engine.name} engine cannot restore a pod lazily: ckpt serves the memory to CRIU's "
                             "lazy-pages daemon beside `runc restore --lazy-pages`, which only runc pods have here",
                             hint="restore it without --lazy")
        lazy.refuse_unservable()
    for checkpoint in opened.pod.checkpoints.values():
        refuse_incompatible(checkpoint.config, force=request.force)
    if lazy is not None:
        assert isinstance(engine, LazyPodEngine)
        restored = engine.restore_lazy(opened.pod, request.name, lazy)
    else:
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
        return restore_opened(opened, request, home=home, registry=registry, on_progress=on_progress, ref=text)


@runtime_checkable
class LazyPodEngine(Protocol):
    """A pod engine that can restore every member before its memory is here (runc)."""

    name: ClassVar[str]

    def restore_lazy(self, pod: PodCheckpoint, name: str | None, lazy: LazyMembers) -> RestoredPod: ...
