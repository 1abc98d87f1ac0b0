"""A stand-in engine for the porcelain's own tests: no runtime, no CRIU, no root. It "dumps" the fixed
image directory of criu_fixture.py with a small root filesystem and spec, keeps its containers' states in
a World, records every step, and fails or is interrupted (KeyboardInterrupt, as Ctrl-C and SIGTERM
arrive) at any step asked for. It goes through the real rollback helper, as every engine does."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from criu_fixture import write_images

from checkpointer.criu.netns import HOST, NetworkState
from checkpointer.errors import AlreadyExists, CkptError, NotFound
from checkpointer.format import roles
from checkpointer.format.read import Checkpoint, unpack_images, unpack_layer
from checkpointer.format.source import BlobSource
from checkpointer.oci import tarball
from checkpointer.porcelain.engines.base import (ConfigFacts, Container, Context, DumpOptions, Dumped, Probe, Restored,
                                                 Staged, Target, done, not_a_container)
from checkpointer.porcelain.locks import container_lock
from checkpointer.porcelain.rollback import RESTORE_INTERRUPTED, SAVE_INTERRUPTED, undone_on_failure

SPEC = {"ociVersion": "1.0.2", "process": {"args": ["/bin/sleepy", "--forever"]}, "root": {"path": "rootfs"}}


class Injected(CkptError):
    """The failure a FakeEngine was told to have."""

    exit_code = 5


@dataclass
class World:
    """The fake host: containers by name and their state (running, frozen, stopped), what was
    restored, and every step taken, in order."""

    states: dict[str, str] = field(default_factory=lambda: {"web": "running"})
    steps: list[str] = field(default_factory=list)
    restored: dict[str, dict] = field(default_factory=dict)
    fail_at: str | None = None
    interrupt_at: str | None = None

    def step(self, name: str) -> None:
        self.steps.append(name)
        if name == self.interrupt_at:
            raise KeyboardInterrupt
        if name == self.fail_at:
            raise Injected(f"injected failure at {name}")


class FakeEngine:
    name: ClassVar[str] = "runc"

    def __init__(self, ctx: Context, world: World) -> None:
        self.ctx, self.world = ctx, world

    def knows(self, name: str) -> bool:
        return name in self.world.states

    # -- save --

    def find(self, target: Target) -> Container:
        self.world.step("find")
        name = target.container or str(target.pid)
        if self.world.states.get(name) != "running":
            raise NotFound(f"no running fake container {name!r}")
        return Container(id=name, name=name, pid=4242, status="running")

    def lock(self, name: str) -> AbstractContextManager[None]:
        return container_lock("fake", None, name, self.ctx.home.root)

    def probe(self, container: Container, options: DumpOptions, pool) -> Probe:  # noqa: ANN001
        self.world.step("probe")
        facts = ConfigFacts(engine=self.name, runtime="runc", runtime_version="1.1.5", container_id=container.id,
                            container_name=container.name)
        return Probe(container, options, facts=done(facts), network=done(NetworkState(HOST)), lock=done(None),
                     size_hint=64 << 10)

    @contextmanager
    def dump(self, probe: Probe, work: Path) -> Iterator[Dumped]:
        name, options = probe.container.name, probe.options.criu
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "bin" / "sleepy").write_bytes(b"#!/bin/sh\nexec sleep infinity\n")
        dumped = Dumped(work / "images", rootfs=rootfs, spec=json.dumps(SPEC).encode())

        def put_back() -> None:
            if not dumped.committed:
                self.world.steps.append("put back")
                self.world.states[name] = "running"

        def commit() -> None:
            self.world.step("commit")
            self.world.states[name] = "running" if options.leave_running else "stopped"

        dumped.on_commit = commit
        with undone_on_failure(put_back, interrupted=SAVE_INTERRUPTED):
            self.world.step("freeze")
            self.world.states[name] = "frozen"
            self.world.step("dump")
            write_images(dumped.images)
            dumped.network = NetworkState(HOST)
            yield dumped
            put_back()

    # -- restore --

    def why_not(self, checkpoint: Checkpoint, spec: Callable[[], dict | None]) -> str | None:
        self.world.step("why_not")
        return not_a_container(checkpoint)

    def restored_name(self, name: str | None, checkpoint: Checkpoint) -> str:
        return name or checkpoint.config.container_id

    def occupant(self, name: str, checkpoint: Checkpoint, if_running: bool) -> Restored | None:
        self.world.step("occupant")
        if name not in self.world.states or self.world.states[name] == "stopped":
            return None
        if if_running and self.world.states[name] == "running":
            return Restored(name, 4343, already_running=True)
        raise AlreadyExists(f"a fake container named {name!r} exists already")

    def restore(self, source: BlobSource, checkpoint: Checkpoint, name: str, staged: Staged) -> Restored:
        bundle = self.ctx.home.bundle_path(name)

        def remove() -> None:
            self.world.steps.append("remove")
            self.world.states.pop(name, None)
            self.world.restored.pop(name, None)

        with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED), \
                self.ctx.home.workdir("restore-") as work:
            self.world.step("unpack")
            images = staged.images[0] / "images" if staged.images else work / "images"
            images.mkdir(exist_ok=True)
            unpack_images(source, checkpoint, images, placed=staged.images[1] if staged.images else frozenset())
            (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
            layer = checkpoint.layer(roles.ROOTFS)
            if staged.rootfs is None and layer is not None:
                unpack_layer(source, layer, bundle / "rootfs", tarball.ROOTFS)
            self.world.states[name] = "restoring"
            self.world.restored[name] = {"images": sorted(p.name for p in images.iterdir()),
                                         "pages": (images / "pages-1.img").read_bytes(), "staged": staged}
            self.world.step("runtime restore")
            self.world.states[name] = "running"
        return Restored(name, 4343, bundle)
