"""Bare process trees (no container), through CRIU's RPC interface (pycriu).

The checkpoint holds only the `criu` and `pages` roles: the processes come back on this host's own
filesystem, with their original pids, as a tree of their own (not ckpt's children)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import ClassVar

from ...criu import config as criu_config
from ...criu import netns, rpc
from ...criu.options import CriuOptions
from ...errors import AlreadyExists, CkptError, NotFound
from ...format.read import Checkpoint, unpack_images
from ...format.source import BlobSource
from ...host import tree_rss
from ...progress import Update
from ...timing import phase
from ..home import disk_errors
from ..repair import repair_images
from ..rollback import undone_on_failure
from .base import (
    ConfigFacts,
    Container,
    Context,
    Dumped,
    DumpOptions,
    Probe,
    Restored,
    Staged,
    Target,
    done,
    store_name_for,
)

ENGINE = "process"


def comm_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class ProcessEngine:
    name: ClassVar[str] = ENGINE

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def knows(self, name: str) -> bool:
        return name.isdigit() and Path(f"/proc/{name}").exists()

    # -- save ------------------------------------------------------------------------------------

    def find(self, target: Target) -> Container:
        assert target.pid is not None
        pid = target.pid
        if not Path(f"/proc/{pid}").exists():
            raise NotFound(f"no process with pid {pid}", hint="`ps -e` lists the processes")
        return Container(id=str(pid), name=comm_of(pid) or f"pid-{pid}", pid=pid, status="running")

    def lock(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def probe(self, container: Container, options: DumpOptions, pool: Executor) -> Probe:
        # CRIU saves and restores a bare tree's own network namespace whole; ckpt only notes that it has one.
        network = netns.NetworkState(netns.PRIVATE if _own_netns(container.pid) else netns.HOST)
        facts = ConfigFacts(engine=ENGINE, runtime="none", runtime_version="", container_id=container.id,
                            container_name=container.name)
        return Probe(container, options, facts=done(facts), network=done(network),
                     lock=pool.submit(_network_lock, network, options.criu), size_hint=tree_rss(container.pid))

    @contextmanager
    def dump(self, probe: Probe, work: Path) -> Iterator[Dumped]:
        ctr, options = probe.container, probe.options.criu
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        lock = probe.lock()
        dumped = Dumped(images, network=probe.network())
        dumped_yet = False

        def put_back() -> None:
            if not dumped.committed and dumped_yet and not options.leave_running:
                self._put_back(images, work, options, ctr.name, lock)

        with undone_on_failure(put_back, interrupted="save interrupted; the processes were put back and nothing "
                                                     "was tagged"):
            self.ctx.on_progress(Update("checkpoint", 0, 1, ctr.name))
            with phase("dump"):
                rpc.dump(ctr.pid, images, criu_work, options, network_lock=lock)
            dumped_yet = True
            self.ctx.on_progress(Update("checkpoint", 1, 1, ctr.name))
            yield dumped
            put_back()

    def _put_back(self, images: Path, work: Path, options: CriuOptions, name: str, lock: str | None) -> None:
        rollback = work / "rollback"
        rollback.mkdir(exist_ok=True)
        try:
            rpc.restore(images, rollback, options, network_lock=lock)
        except CkptError as exc:
            rescue = self.ctx.home.rescue_path(store_name_for(name))
            images.rename(rescue)
            raise CkptError(f"save failed after the dump, and putting the processes back failed too: {exc}",
                            hint=f"the CRIU images were kept in {rescue}; `criu restore -D {rescue} -d` "
                                 "can bring them back") from exc

    # -- restore ---------------------------------------------------------------------------------

    def why_not(self, checkpoint: Checkpoint, spec: Callable[[], dict | None]) -> str | None:
        engine = checkpoint.config.engine
        if engine == ENGINE:
            return None
        return (f"a {engine} checkpoint holds a container, whose processes need the container's root "
                "filesystem, mounts and namespaces; only a container runtime sets those up")

    def restored_name(self, name: str | None, checkpoint: Checkpoint) -> str:
        return name or checkpoint.config.container_name

    def occupant(self, name: str, checkpoint: Checkpoint, if_running: bool) -> Restored | None:
        config = checkpoint.config
        old_pid = int(config.container_id) if config.container_id.isdigit() else 0
        if not old_pid or not Path(f"/proc/{old_pid}").exists():
            return None
        if if_running and comm_of(old_pid) == config.container_name:
            return Restored(name, old_pid, already_running=True)
        raise AlreadyExists(f"pid {old_pid} is in use here (by {comm_of(old_pid) or 'a process'}), and CRIU "
                            "restores processes with their original pids",
                            hint="stop that process first, or restore in another pid namespace")

    def restore(self, source: BlobSource, checkpoint: Checkpoint, name: str, staged: Staged) -> Restored:
        config = checkpoint.config
        with self.ctx.home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
                disk_errors("could not unpack the checkpoint"):
            images, criu_work = work / "images", work / "criu"
            images.mkdir()
            criu_work.mkdir()
            unpack_images(source, checkpoint, images, on_progress=self.ctx.on_progress)
            repair_images(images)
            self.ctx.on_progress(Update("restore", 0, 1, name))
            lock = _network_lock(config.network, config.criu_options)
            with undone_on_failure(lambda: None, interrupted="restore interrupted"):
                restored = rpc.restore(images, criu_work, config.criu_options, network_lock=lock)
            self.ctx.on_progress(Update("restore", 1, 1, name))
        return Restored(name, restored.pid)


def _own_netns(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _network_lock(network: netns.NetworkState | None, options: CriuOptions) -> str | None:
    """CRIU locks the network of a tree in a network namespace of its own, and each established
    connection of one in the host's."""
    own = network is not None and network.namespace != netns.HOST
    return criu_config.network_lock(needs_lock=own or options.tcp_established)

