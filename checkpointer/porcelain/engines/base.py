"""What an engine is: the container managers ckpt saves from and restores into (runc, Podman, bare
process trees through CRIU's RPC; a pod of containers next). The save and restore pipelines
(porcelain/save.py, restore.py) talk to every engine through this protocol only."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from ... import __version__
from ...criu.netns import NetworkState
from ...criu.options import CriuOptions
from ...format.config import CheckpointConfig
from ...format.read import Checkpoint
from ...format.source import BlobSource
from ...format.write import EngineFiles
from ...host import host_info
from ...progress import OnProgress, noop
from ..home import Home


@dataclass(frozen=True, slots=True)
class Context:
    """What every engine is run with."""

    home: Home
    on_progress: OnProgress = noop
    runc_root: Path | None = None  # runc's state directory (runc --root)
    insecure: bool = False  # a registry may be plain HTTP (Podman pulls a base image from it)


@dataclass(frozen=True, slots=True)
class Target:
    """What a save was asked to checkpoint: a container by name or id, or a process tree by pid."""

    container: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """A container (or process tree) an engine found, running or paused. Engines add their own facts."""

    id: str  # what the engine calls it
    name: str  # how it is shown and stored (NAME:latest)
    pid: int  # its init
    status: str  # running, paused


@dataclass(frozen=True, slots=True)
class DumpOptions:
    criu: CriuOptions = CriuOptions()
    with_volumes: bool = False  # Podman: the container's volumes go into the checkpoint


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """What the engine knows of a container for the checkpoint's config (format/config.py)."""

    engine: str
    runtime: str
    runtime_version: str
    container_id: str
    container_name: str
    base_name: str | None = None
    base_digest: str | None = None


def checkpoint_config(facts: ConfigFacts, options: CriuOptions, *, created: str, criu_version: str,
                      network: NetworkState | None = None) -> CheckpointConfig:
    """The one place a checkpoint's config is made (saves of every engine, and the hooks' publisher)."""
    return CheckpointConfig(
        engine=facts.engine, runtime=facts.runtime, runtime_version=facts.runtime_version,
        criu_version=criu_version, host=host_info(), container_id=facts.container_id,
        container_name=facts.container_name, created=created, criu_options=options,
        base_name=facts.base_name, base_digest=facts.base_digest, ckpt_version=__version__, network=network)


class Probe:
    """What a save learns of a container while its preflight runs (each in the save's thread pool):
    the engine's facts, the network to record, and the CRIU network lock the dump needs."""

    def __init__(self, container: Container, options: DumpOptions, facts: Future[ConfigFacts],
                 network: Future[NetworkState], lock: Future[str | None], size_hint: int) -> None:
        self.container, self.options, self.size_hint = container, options, size_hint
        self._facts, self._network, self._lock = facts, network, lock

    def facts(self) -> ConfigFacts:
        return self._facts.result()

    def network(self) -> NetworkState:
        return self._network.result()

    def lock(self) -> str | None:
        """CRIU's network lock; a host without one fails the save here, before anything is frozen."""
        return self._lock.result()


def done(value: object) -> Future:
    """A future that already holds `value` (a probe that needs no thread)."""
    future: Future = Future()
    future.set_result(value)
    return future


@dataclass(eq=False)
class Dumped:
    """What a dump left in the work directory, to pack: the CRIU images, and the root filesystem and
    runtime spec (runc), or the engine's own files (Podman). commit() tells the engine the
    checkpoint is safely stored: only then is the container stopped (or resumed, with
    --leave-running). Leaving the engine's dump() context without commit() puts it back."""

    images: Path
    rootfs: Path | None = None
    spec: bytes | None = None
    engine_files: EngineFiles | None = None
    network: NetworkState | None = None
    on_commit: Callable[[], None] = field(default=lambda: None, repr=False)
    committed: bool = False

    def commit(self) -> None:
        self.committed = True
        self.on_commit()


@dataclass(frozen=True, slots=True)
class Staged:
    """What was unpacked while the checkpoint downloaded (porcelain/prefetch.py)."""

    images: tuple[Path, frozenset[str]] | None = None  # the work dir holding images/, and the chunks placed
    rootfs: Path | None = None


@dataclass(frozen=True, slots=True)
class Restored:
    container: str
    pid: int
    bundle: Path | None = None  # runc: where the restored container's bundle lives
    already_running: bool = False
    warnings: tuple[str, ...] = ()  # what did not come back as it was (the container runs)


class Engine(Protocol):
    name: ClassVar[str]

    def knows(self, name: str) -> bool:
        """Whether this engine has a container called `name` (running or not)."""
        ...

    # -- save --
    def find(self, target: Target) -> Container:
        """The running container `target` names (NotFound, with a hint, if there is none)."""
        ...

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Held while one ckpt saves or restores container `name`: a second one gets Busy."""
        ...

    def probe(self, container: Container, options: DumpOptions, pool: Executor) -> Probe: ...

    def dump(self, probe: Probe, work: Path) -> AbstractContextManager[Dumped]:
        """Freeze and dump the container into `work`. Any exception inside the context (Ctrl-C too)
        puts the container back as it was; so does leaving it without Dumped.commit()."""
        ...

    # -- restore --
    def why_not(self, checkpoint: Checkpoint, spec: Callable[[], dict | None]) -> str | None:
        """Why this engine cannot restore `checkpoint`, precisely; None when it can. `spec()` reads
        the checkpoint's runtime spec (None if it has none), should the answer need it."""
        ...

    def restored_name(self, name: str | None, checkpoint: Checkpoint) -> str: ...

    def occupant(self, name: str, checkpoint: Checkpoint, if_running: bool) -> Restored | None:
        """Make sure `name` is free for `checkpoint`: AlreadyExists if it is taken, or, with
        `if_running`, what runs there already (None when it is free)."""
        ...

    def restore(self, source: BlobSource, checkpoint: Checkpoint, name: str, staged: Staged) -> Restored:
        """Restore `checkpoint` (every blob at hand in `source`) as `name`; on any failure everything
        this made is removed again."""
        ...


def not_a_container(checkpoint: Checkpoint) -> str | None:
    """Why a container engine cannot restore a bare process checkpoint; None for a container's."""
    if checkpoint.config.engine != "process":
        return None
    return ("a bare process checkpoint has no root filesystem and no runtime spec to make a container "
            "from; its processes come back on this host's own filesystem with --engine process")


def store_name_for(container_id: str) -> str:
    """A local store name derived from a container id (store names are lower-case)."""
    import re

    name = re.sub(r"[^a-z0-9._-]+", "-", container_id.lower()).strip("._-")
    return name or "checkpoint"
