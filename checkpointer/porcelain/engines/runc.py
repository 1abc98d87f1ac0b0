"""runc containers. A save pauses the container and has runc dump it with CRIU's leave-running, so
it stays frozen, not gone, until the checkpoint is stored; only then is it stopped (or resumed, with
--leave-running). A failure or Ctrl-C resumes it, and so does a guard process if ckpt itself is
killed (SIGKILL included). With --tcp-established the dump itself stops the container, as CRIU must
keep its connections locked; a failure after the dump restores it in place from the images.

A restore needs nothing of the original container: the checkpoint carries the root filesystem and
the runtime spec, unpacked into $CKPT_HOME/containers/NAME."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from ... import atomic
from ...criu import config as criu_config
from ...criu import netns
from ...criu.diagnose import criu_failed
from ...criu.options import CriuOptions
from ...errors import AlreadyExists, CkptError, CorruptData, UsageError
from ...format import roles
from ...format.read import Checkpoint, unpack_images, unpack_layer
from ...format.source import BlobSource
from ...host import tree_rss
from ...lazy.stop import Stopper
from ...oci import tarball
from ...progress import Update
from ...runtime.runc import ContainerState, Runc, criu_leaves_tmp_as_it_was, load_spec, rootfs_of
from ...timing import phase
from ..deliveries import LazyPages
from ..home import disk_errors
from ..locks import container_lock
from ..repair import repair_images
from ..rollback import RESTORE_INTERRUPTED, SAVE_INTERRUPTED, undone_on_failure
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
    not_a_container,
    store_name_for,
)
from .placement import Placement

# Where the engines keep per-container files that their specs bind into containers.
_ENGINE_PATHS = ("/var/run/containers/", "/run/containers/", "/var/lib/containers/", "/var/lib/kubelet/",
                 "/run/containerd/", "/var/lib/containerd/", "/var/run/crio/", "/run/crio/")


@dataclass(frozen=True, slots=True)
class RuncContainer(Container):
    bundle: Path
    spec: dict
    spec_bytes: bytes


class RuncEngine:
    name: ClassVar[str] = "runc"

    def __init__(self, ctx: Context, runc: Runc | None = None, placement: Placement | None = None) -> None:
        """`placement`: a restore puts the container into a pod (porcelain/pod/runc.py)."""
        self.ctx = ctx
        self._runc = runc
        self.placement = placement

    @property
    def runc(self) -> Runc:
        if self._runc is None:
            self._runc = Runc(root=self.ctx.runc_root)
        return self._runc

    def knows(self, name: str) -> bool:
        return self.runc.exists(name)

    # -- save ------------------------------------------------------------------------------------

    def find(self, target: Target) -> RuncContainer:
        assert target.container is not None
        state = self.runc.state(target.container)
        if state.status not in ("running", "paused"):
            raise UsageError(f"container {target.container!r} is {state.status}, not running",
                             hint="only running containers can be checkpointed")
        spec = load_spec(state.bundle)
        return RuncContainer(id=target.container, name=target.container, pid=state.pid, status=state.status,
                             bundle=state.bundle, spec=spec, spec_bytes=(state.bundle / "config.json").read_bytes())

    def lock(self, name: str) -> AbstractContextManager[None]:
        return container_lock("runc", self.ctx.runc_root, name, self.ctx.home.root)

    def probe(self, container: Container, options: DumpOptions, pool: Executor) -> Probe:
        assert isinstance(container, RuncContainer)
        # CRIU drops the network namespace of a runc container (docs/network.md): its loopback is
        # recorded while the preflight runs, and brought back at restore.
        namespace = netns.namespace_of(container.spec)
        return Probe(container, options,
                     facts=pool.submit(self._facts, container),
                     network=pool.submit(netns.read, container.pid, namespace),
                     lock=pool.submit(criu_config.network_lock,
                                      needs_lock=namespace != netns.HOST or options.criu.tcp_established),
                     size_hint=tree_rss(container.pid))

    def _facts(self, container: Container) -> ConfigFacts:
        return ConfigFacts(engine="runc", runtime="runc", runtime_version=self.runc.version(),
                           container_id=container.id, container_name=container.name)

    @contextmanager
    def dump(self, probe: Probe, work: Path) -> Iterator[Dumped]:
        ctr, options = probe.container, probe.options.criu
        assert isinstance(ctr, RuncContainer)
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        conf = criu_config.write(work, criu_config.CriuConfig(network_lock=probe.lock()))
        freeze = not options.tcp_established and ctr.status == "running"
        dump_options = replace(options, leave_running=True) if freeze else options
        guard = self.runc.resume_guard(ctr.id, marker=str(images)) if freeze else None
        dumped = Dumped(images, rootfs=rootfs_of(ctr.bundle, ctr.spec), spec=ctr.spec_bytes)
        dumped_yet = False

        def put_back() -> None:
            if dumped.committed:
                return
            if guard:
                guard.fire()
            elif dumped_yet and not options.leave_running:
                self._put_back(ctr, images, work, options, dumped.network)

        def commit() -> None:
            if guard and options.leave_running:
                guard.fire()
            elif guard:
                guard.keep()
                with phase("stop"):
                    self.runc.stop(ctr.id, ctr.pid)

        dumped.on_commit = commit
        with undone_on_failure(put_back, interrupted=SAVE_INTERRUPTED):
            if freeze:
                with phase("pause"):
                    self.runc.pause(ctr.id)
            # Read while the preflight and the pause ran; the namespace is there until the dump ends.
            dumped.network = probe.network()
            self.ctx.on_progress(Update("checkpoint", 0, 1, ctr.id))
            with phase("dump"), criu_leaves_tmp_as_it_was(rootfs_of(ctr.bundle, ctr.spec)):
                self.runc.checkpoint(ctr.id, images, criu_work, dump_options, criu_conf=conf)
            dumped_yet = True
            self.ctx.on_progress(Update("checkpoint", 1, 1, ctr.id))
            yield dumped
            put_back()  # the pipeline left without committing: nothing was stored

    def _put_back(self, ctr: RuncContainer, images: Path, work: Path, options, network) -> None:
        """Restore the container where it was, after a failure that came after the dump."""
        restore_work = work / "rollback"
        restore_work.mkdir(exist_ok=True)
        try:
            conf = criu_config.restore_config(restore_work, network, tcp_established=options.tcp_established)
            self.runc.restore(ctr.id, ctr.bundle, images, restore_work, options.for_restore(), criu_conf=conf)
        except CkptError as exc:
            rescue = self.ctx.home.rescue_path(store_name_for(ctr.id))
            images.rename(rescue)
            raise CkptError(f"save failed after the dump, and putting the container back failed too: {exc}",
                            hint=f"the CRIU images were kept in {rescue}; `runc restore --image-path` "
                                 "can bring the container back") from exc

    # -- restore ---------------------------------------------------------------------------------

    def why_not(self, checkpoint: Checkpoint, spec: Callable[[], dict | None]) -> str | None:
        if problem := not_a_container(checkpoint):
            return problem
        spec_layer, rootfs_layer = checkpoint.layer(roles.SPEC), checkpoint.layer(roles.ROOTFS)
        if spec_layer and rootfs_layer:
            return None
        engine, base = checkpoint.config.engine, checkpoint.config.base_name
        missing = []
        if rootfs_layer is None:
            if checkpoint.layers(roles.ENGINE):
                missing.append("a full root filesystem (it has only rootfs-diff.tar, the container's changes to "
                               f"the image {base or '(not named)'}, and runc needs the whole tree)")
            else:
                missing.append("a root filesystem")
        if spec_layer is None:
            missing.append("a runtime spec (spec.dump / config.json)")
        text = f"this {engine} checkpoint cannot be restored into runc: it lacks " + " and ".join(missing)
        if spec_layer is not None and engine != "runc":
            binds = [str(m.get("source", "")) for m in (spec() or {}).get("mounts", []) or []
                     if isinstance(m, dict) and str(m.get("source", "")).startswith(_ENGINE_PATHS)]
            if binds:
                text += (f"; also, its runtime spec binds files the {engine} host kept for the container "
                         f"({', '.join(binds[:4])}{' ...' if len(binds) > 4 else ''}), which do not exist here")
        return text

    def restored_name(self, name: str | None, checkpoint: Checkpoint) -> str:
        return name or checkpoint.config.container_id

    def occupant(self, name: str, checkpoint: Checkpoint, if_running: bool) -> Restored | None:
        if not self.runc.exists(name):
            return None
        state = self.runc.state(name)
        if if_running and state.status == "running":
            return Restored(name, state.pid, state.bundle, already_running=True)
        if state.status != "running" and state.bundle == self.ctx.home.bundle_path(name):
            self.runc.delete(name)  # a restore of ours that was killed half-way: start again
            return None
        raise AlreadyExists(f"a runc container named {name!r} exists already",
                            hint="pick another name with --name, or remove that container")

    def restore(self, source: BlobSource, checkpoint: Checkpoint, name: str, staged: Staged) -> Restored:
        bundle = self.ctx.home.bundle_path(name)
        if bundle.exists():
            shutil.rmtree(bundle)  # left by a restore that was killed; no runc container uses it

        def remove() -> None:
            if self.runc.exists(name):
                self.runc.delete(name)
            shutil.rmtree(bundle, ignore_errors=True)

        with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED), ExitStack() as stack, \
                disk_errors("could not unpack the checkpoint"):
            if staged.images:  # memory was unpacked while it downloaded
                work, placed = staged.images
            else:
                work = stack.enter_context(self.ctx.home.workdir("restore-", size_hint=checkpoint.images_size()))
                placed = frozenset()
                (work / "images").mkdir()
            with phase("unpack rootfs"):
                spec = self._prepare_bundle(source, checkpoint, bundle, staged.rootfs)
            network = checkpoint.config.network or netns.NetworkState.assumed(spec)
            options = checkpoint.config.criu_options
            criu_conf = criu_config.restore_config(work, network, tcp_established=options.tcp_established,
                                                   locked=bool(self.placement and self.placement.locked))
            images = work / "images"
            with phase("unpack images"):
                unpack_images(source, checkpoint, images, on_progress=self.ctx.on_progress, placed=placed)
            repair_images(images)
            (work / "criu").mkdir()
            self.ctx.on_progress(Update("restore", 0, 1, name))
            with phase("runc restore"):
                state = self.runc.restore(name, bundle, images, work / "criu", options, criu_conf=criu_conf)
            self.ctx.on_progress(Update("restore", 1, 1, name))
        return Restored(name, state.pid, bundle, warnings=netns.warnings_after_restore(network, state.pid))

    def restore_lazy(self, source: BlobSource, checkpoint: Checkpoint, name: str, pages: LazyPages) -> Restored:
        """Restore `checkpoint` as `name` before its memory is here: the CRIU images without their
        pages, then `runc restore --lazy-pages`, with the page supervisor `pages` (started by the
        caller, waiting for its job) serving every page the container needs, and then the rest.
        Returns once the container runs. On any failure everything this made is removed again,
        the container killed first (by the supervisor too, if it had come up)."""
        bundle = self.ctx.home.bundle_path(name)
        if bundle.exists():
            shutil.rmtree(bundle)  # left by a restore that was killed; no runc container uses it

        def remove() -> None:
            if self.runc.exists(name):
                self.runc.delete(name)
            shutil.rmtree(bundle, ignore_errors=True)

        runc = [self.runc.binary, *(["--root", str(self.runc.root)] if self.runc.root else [])]
        stopper = Stopper(kill=(*runc, "kill", "--all", name, "KILL"), cleanup=((*runc, "delete", "--force", name),),
                          remove=(str(bundle),))
        try:
            with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED), \
                    disk_errors("could not unpack the checkpoint"), ThreadPoolExecutor(1, "ckpt-rootfs") as pool:
                # The root filesystem comes while the CRIU images are unpacked and the supervisor
                # writes the pages files and starts its daemon: three things at once.
                bundled = pool.submit(self._prepare_bundle, source, checkpoint, bundle, None)
                with phase("unpack criu images"):
                    for layer in checkpoint.layers(roles.CRIU):
                        unpack_layer(source, layer, pages.images, tarball.CRIU_IMAGES)
                    repair_images(pages.images)
                pages.submit(checkpoint.layers(roles.PAGES), stopper)
                with phase("unpack rootfs"):
                    spec = bundled.result()
                network = checkpoint.config.network or netns.NetworkState.assumed(spec)
                options = checkpoint.config.criu_options
                criu_conf = criu_config.restore_config(pages.work, network, tcp_established=options.tcp_established,
                                                       locked=bool(self.placement and self.placement.locked))
                with phase("page supervisor ready"):
                    pages.ready()
                self.ctx.on_progress(Update("restore", 0, 1, name))
                with phase("runc restore --lazy-pages"):
                    state = _restore_lazily(self.runc, name, bundle, pages, options, criu_conf)
                pages.restored(state.pid)
                self.ctx.on_progress(Update("restore", 1, 1, name))
        except BaseException as exc:
            cause = pages.abandon()  # after the container was removed: none of it ran on missing pages
            if isinstance(exc, CkptError) and cause is not None:
                raise cause from exc  # delivery failed first (a chunk, the registry): that is why
            raise
        return Restored(name, state.pid, bundle, warnings=netns.warnings_after_restore(network, state.pid))

    def _prepare_bundle(self, source: BlobSource, checkpoint: Checkpoint, bundle: Path,
                        unpacked: Path | None) -> dict:
        spec_layer = checkpoint.layer(roles.SPEC)
        rootfs_layer = checkpoint.layer(roles.ROOTFS)
        if spec_layer is None or rootfs_layer is None:
            raise UsageError("this checkpoint carries no rootfs or runtime spec, so it cannot be restored "
                             "into a new runc container", hint="restore it on the host that made it")
        try:
            spec = json.loads(source.read_blob(spec_layer))
            spec["root"] = {**spec.get("root", {}), "path": "rootfs"}
            if self.placement is not None:
                spec = self.placement.apply(spec)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise CorruptData(f"the runtime spec in the checkpoint is malformed: {exc}") from None
        bundle.mkdir(parents=True)
        if unpacked is not None:
            try:
                unpacked.rename(bundle / "rootfs")  # unpacked while the rest downloaded
            except OSError:  # on another filesystem than the bundles: unpack it again below
                pass
        if not (bundle / "rootfs").exists():
            (bundle / "rootfs").mkdir()
            self.ctx.on_progress(Update("unpack rootfs", 0, rootfs_layer.size))
            unpack_layer(source, rootfs_layer, bundle / "rootfs", tarball.ROOTFS)
            self.ctx.on_progress(Update("unpack rootfs", rootfs_layer.size, rootfs_layer.size))
        atomic.write_bytes(bundle / "config.json", json.dumps(spec, indent=2).encode(), mode=0o644)
        return spec



def _restore_lazily(runc: Runc, name: str, bundle: Path, pages: LazyPages, options: CriuOptions,
                    criu_conf: Path | None) -> ContainerState:
    """`runc restore --lazy-pages`, the images in `pages.images` and CRIU's work directory (where
    it finds lazy-pages.socket) `pages.work`; otherwise as Runc.restore runs it."""
    args = ["restore", "--detach", "--lazy-pages", "--image-path", str(pages.images), "--work-path",
            str(pages.work), "--bundle", str(bundle), *options.for_restore().flags(), name]
    res = runc._run(args, pages.work / "runc.log", criu_conf)
    if res.returncode != 0:
        runc.delete(name)
        raise criu_failed(f"runc could not restore {name!r} lazily", log=pages.work / "restore.log",
                          output=res.stdout.strip())
    return runc.state(name)
