"""Podman containers. Podman writes and reads its own export archive (`podman container checkpoint
--export`, `podman container restore --import`); ckpt stores that archive's contents as layers
(the CRIU images as criu and pages, Podman's files as the engine role) and rebuilds it to restore."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...compat import archive, keys
from ...compat.exportdir import check_shape, has_archive, unpack_archive_dir
from ...criu import config as criu_config
from ...criu import netns
from ...criu.options import CriuOptions
from ...errors import AlreadyExists, CkptError, MissingDependency, UsageError
from ...format.read import Checkpoint
from ...format.source import BlobSource
from ...format.write import EngineFiles
from ...host import tree_rss
from ...progress import Update
from ...runtime.podman import Podman, PodmanContainer
from ...runtime.runc import Runc
from ...timing import phase
from ..home import disk_errors
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


@dataclass(frozen=True, slots=True)
class PodmanFound(Container):
    podman: PodmanContainer


class PodmanEngine:
    name: ClassVar[str] = "podman"

    def __init__(self, ctx: Context, podman: Podman | None = None) -> None:
        self.ctx = ctx
        self._podman = podman

    @property
    def podman(self) -> Podman:
        if self._podman is None:
            self._podman = Podman()
        return self._podman

    def knows(self, name: str) -> bool:
        return self.podman.exists(name)

    # -- save ------------------------------------------------------------------------------------

    def find(self, target: Target) -> PodmanFound:
        assert target.container is not None
        ctr = self.podman.container(target.container)
        if ctr.status not in ("running", "paused"):
            raise UsageError(f"Podman container {ctr.name!r} is {ctr.status}, not running",
                             hint="only running containers can be checkpointed")
        return PodmanFound(id=ctr.id, name=ctr.name, pid=ctr.pid, status=ctr.status, podman=ctr)

    def lock(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def probe(self, container: Container, options: DumpOptions, pool: Executor) -> Probe:
        assert isinstance(container, PodmanFound)
        namespace = netns.namespace_of(_read_spec(Path(container.podman.spec_path)))
        return Probe(container, options,
                     facts=pool.submit(self._facts, container.podman),
                     network=pool.submit(netns.read, container.pid, namespace),
                     lock=pool.submit(criu_config.network_lock,
                                      needs_lock=namespace != netns.HOST or options.criu.tcp_established),
                     size_hint=tree_rss(container.pid))

    def _facts(self, ctr: PodmanContainer) -> ConfigFacts:
        runtime_version = ""
        if ctr.runtime == "runc":
            try:
                runtime_version = Runc().version()
            except MissingDependency:
                pass
        return ConfigFacts(engine="podman", runtime=ctr.runtime or "runc", runtime_version=runtime_version,
                           container_id=ctr.id, container_name=ctr.name, base_name=ctr.image_name or None,
                           base_digest=self.podman.image_digest(ctr.image_id) if ctr.image_id else None)

    @contextmanager
    def dump(self, probe: Probe, work: Path) -> Iterator[Dumped]:
        found, options = probe.container, probe.options.criu
        assert isinstance(found, PodmanFound)
        ctr = found.podman
        export, root = work / "export.tar", work / "archive"
        criu = _criu(work, ctr.runtime, criu_config.write(work, criu_config.CriuConfig(network_lock=probe.lock())))
        dumped = Dumped(root / keys.CHECKPOINT_DIR)
        dumped_yet = False

        def put_back() -> None:
            if not dumped.committed and dumped_yet and not options.leave_running:
                self._put_back(ctr, export, root, options, work, dumped.network)

        with undone_on_failure(put_back, interrupted=SAVE_INTERRUPTED):
            dumped.network = probe.network()  # before the dump: it stops the container
            self.ctx.on_progress(Update("checkpoint", 0, 1, ctr.name))
            with phase("dump"):
                self.podman.checkpoint(ctr.id, export, options, with_volumes=probe.options.with_volumes, criu=criu)
            dumped_yet = True
            self.ctx.on_progress(Update("checkpoint", 1, 1, ctr.name))
            with phase("unpack export"), disk_errors("could not store the checkpoint"):
                root.mkdir()
                archive.unpack(export, root)
                check_shape(root)
                export.unlink()  # its contents are in `root` now: the memory it held goes back
            spec = root / keys.SPEC_DUMP
            dumped.spec = spec.read_bytes() if spec.is_file() else None
            dumped.engine_files = EngineFiles(root, sorted(n for n in os.listdir(root) if n != keys.CHECKPOINT_DIR))
            yield dumped
            put_back()

    def _put_back(self, ctr: PodmanContainer, export: Path, root: Path, options: CriuOptions, work: Path,
                  network: netns.NetworkState | None) -> None:
        """Restore the container in place (from the images Podman kept) after a failure after the dump."""
        try:
            rollback = work / "rollback"
            rollback.mkdir(exist_ok=True)
            conf = criu_config.restore_config(rollback, network, tcp_established=options.tcp_established)
            self.podman.restore_in_place(ctr.id, options, criu=_criu(rollback, ctr.runtime, conf))
        except CkptError as exc:
            rescue = self.ctx.home.rescue_path(store_name_for(ctr.name), ".tar")
            if export.exists():
                shutil.copyfile(export, rescue)
            else:
                archive.write(root, rescue, compression="none")
            raise CkptError(f"save failed after the dump, and putting the container back failed too: {exc}",
                            hint=f"Podman's export was kept in {rescue}; `podman container restore --import "
                                 f"{rescue}` brings the container back") from exc

    # -- restore ---------------------------------------------------------------------------------

    def why_not(self, checkpoint: Checkpoint, spec: Callable[[], dict | None]) -> str | None:
        engine = checkpoint.config.engine
        if problem := not_a_container(checkpoint):
            return problem
        if engine == "podman" and has_archive(checkpoint):
            return None
        if engine == "podman":
            return (f"Podman restores only from its own export archive, which needs Podman's container "
                    f"configuration (config.dump) and an image to base the container on; this {engine} "
                    "checkpoint has neither")
        if engine == "runc":
            return ("Podman restores only from its own export archive, which needs Podman's container "
                    "configuration (config.dump in libpod's format) and an image to base the container on; "
                    "a runc checkpoint carries a full root filesystem and a runtime spec instead")
        return (f"Podman restores only its own checkpoints: the config.dump of this {engine} checkpoint is "
                f"{engine}'s, not libpod's container configuration")

    def restored_name(self, name: str | None, checkpoint: Checkpoint) -> str:
        return name or checkpoint.config.container_name

    def occupant(self, name: str, checkpoint: Checkpoint, if_running: bool) -> Restored | None:
        if not self.podman.exists(name):
            return None
        ctr = self.podman.container(name)
        if if_running and ctr.status == "running":
            return Restored(name, ctr.pid, already_running=True)
        raise AlreadyExists(f"a Podman container named {name!r} exists already",
                            hint="pick another name with --name, or remove that container")

    def restore(self, source: BlobSource, checkpoint: Checkpoint, name: str, staged: Staged) -> Restored:
        podman, config = self.podman, checkpoint.config
        pulled = _ensure_base(podman, config.base_name, insecure=self.ctx.insecure)

        def remove() -> None:
            if podman.exists(name):
                podman.remove(name)
            if pulled:
                podman.remove_image(pulled)

        with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED):
            with self.ctx.home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
                    disk_errors("could not unpack the checkpoint"):
                root = work / "archive"
                root.mkdir()
                unpack_archive_dir(source, checkpoint, root, on_progress=self.ctx.on_progress)
                repair_images(root / keys.CHECKPOINT_DIR)
                spec = _read_spec(root / keys.SPEC_DUMP)
                network = config.network or netns.NetworkState.assumed(spec)
                options = config.criu_options
                conf = criu_config.restore_config(work, network, tcp_established=options.tcp_established)
                export = work / "import.tar"
                archive.write(root, export, compression="none")
                shutil.rmtree(root)
                self.ctx.on_progress(Update("restore", 0, 1, name))
                imported = podman.restore_import(export, name, options, original_name=config.container_name,
                                                 criu=_criu(work, config.runtime, conf))
                self.ctx.on_progress(Update("restore", 1, 1, name))
            ctr = podman.container(name)
        warnings = netns.warnings_after_restore(network, ctr.pid) + ((imported.warning,) if imported.warning else ())
        return Restored(name, ctr.pid, warnings=warnings)


def _criu(work: Path, runtime: str, conf: Path | None) -> Path | None:
    """How a CRIU config reaches CRIU under Podman: a CRIU wrapper for runc (runtime/podman.py).
    Other runtimes have no such option; they get none."""
    return criu_config.criu_wrapper(work, conf) if conf and runtime in ("runc", "") else None


def _read_spec(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _ensure_base(podman: Podman, base: str | None, *, insecure: bool) -> str | None:
    """Make the base image present (pulling it if need be); returns its name if this pulled it."""
    if not base or podman.image_exists(base):
        return None
    podman.pull(base, tls_verify=not insecure)
    return base
