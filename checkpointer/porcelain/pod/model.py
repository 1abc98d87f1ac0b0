"""What a pod engine is: the engines whose pods ckpt saves and restores as one checkpoint (runc
containers that join one sandbox's namespaces; a Podman pod). The pod pipelines (save.py,
restore.py here) talk to every pod engine through this protocol only.

A pod engine freezes every member before the first dump, holds the pod's network lock from then
until the whole pod checkpoint is stored, dumps the members one by one (the pipeline packs member
k while member k+1 is dumped), and commits all at once; a failure anywhere puts every member back.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Protocol

from ...criu.netns import NetworkState
from ...format.pod import PodCheckpoint, PodIdentity
from ...format.source import BlobSource
from ..engines.base import ConfigFacts, Dumped, DumpOptions


@dataclass(frozen=True, slots=True)
class Member:
    """A running (or paused) container of a pod, as its engine found it."""

    name: str  # its name in the pod
    id: str  # what the engine calls it
    pid: int
    namespaces: Mapping[str, str]  # format/pod.py: type -> own, host, engine-sandbox or a member's name
    runtime_id: str = ""  # the id its OCI runtime (runc) knows it by, when that differs (Podman)
    spec: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespaces", MappingProxyType(dict(self.namespaces)))
        object.__setattr__(self, "spec", MappingProxyType(dict(self.spec)))

    @property
    def runc_id(self) -> str:
        return self.runtime_id or self.id


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod found for a save: its identity, its members (the sandbox among them when the engine
    dumps it), and the process whose network namespace the members share (its lock goes there)."""

    engine: str
    identity: PodIdentity
    members: tuple[Member, ...]
    sandbox: str | None  # the member that owns the shared namespaces; None: the engine's, not dumped
    netns_pid: int | None  # a process in the pod's network namespace; None: the members share none
    annotations: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # the engine's own pod-level files, kept as they are

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def dump_order(self) -> tuple[Member, ...]:
        """The members, the sandbox last: whatever order, the lock keeps the cut consistent, and
        the sandbox (usually a pause process) is the smallest to keep frozen longest."""
        return tuple(sorted(self.members, key=lambda m: m.name == self.sandbox))


class Frozen(Protocol):
    """A pod frozen and locked (PodEngine.freeze). dump() dumps one member into its own directory;
    commit() says the pod checkpoint is stored: only then are the members stopped (or resumed,
    --leave-running). Leaving the context any other way puts every member back as it was."""

    def dump(self, member: Member) -> Dumped: ...

    def commit(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RestoredMember:
    name: str  # in the pod
    container: str  # the engine's id (runc) or name (Podman)
    pid: int
    warnings: tuple[str, ...] = ()
    delivery: str | None = None  # restored lazily: its page delivery (`ckpt status`), still under way


@dataclass(frozen=True, slots=True)
class RestoredPod:
    name: str
    members: tuple[RestoredMember, ...]
    warnings: tuple[str, ...] = ()


class PodEngine(Protocol):
    name: ClassVar[str]

    def knows(self, name: str) -> bool:
        """Whether this engine has a pod called `name`."""
        ...

    # -- save --
    def find(self, name: str, members: Sequence[str] = ()) -> Pod:
        """The pod `name` names, with every member (or exactly `members`, checked); NotFound or
        UsageError, with a hint, when it cannot be saved as it is."""
        ...

    def lock(self, pod: Pod) -> AbstractContextManager[None]:
        """Held while one ckpt saves the pod: a second save of any member gets Busy."""
        ...

    def facts(self, member: Member) -> ConfigFacts: ...

    def network(self, member: Member) -> NetworkState: ...

    def freeze(self, pod: Pod, work: Path, options: DumpOptions) -> AbstractContextManager[Frozen]: ...

    # -- restore --
    def why_not(self, pod: PodCheckpoint) -> str | None:
        """Why this engine cannot restore `pod`, precisely; None when it can."""
        ...

    def restore(self, source: BlobSource, pod: PodCheckpoint, name: str | None) -> RestoredPod:
        """Restore `pod` (every blob at hand in `source`) as pod `name` (None: its own name);
        on any failure everything this made is removed again."""
        ...


def member_name(container_id: str, pod_name: str) -> str:
    """A member's name in the pod: its id without the pod's name in front ("web-db" in pod "web" is
    "db"); the sandbox whose id is the pod's name is "sandbox"."""
    if container_id == pod_name:
        return "sandbox"
    return container_id.removeprefix(f"{pod_name}-") or container_id


def restored_id(member: str, original: str, pod: str | None) -> str:
    """The id a member is restored as: its own, or "<pod>-<member>" in a pod of another name."""
    return f"{pod}-{member}" if pod else original
