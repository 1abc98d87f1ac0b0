"""Save and restore Podman containers. Podman writes and reads its own export archive
(`podman container checkpoint --export`, `podman container restore --import`); ckpt stores that
archive's contents as layers (compat/exportdir.py) and rebuilds it for the restore.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..compat import archive
from ..compat.exportdir import has_archive, unpack_archive_dir, write_ckpt
from ..criu import config as criu_config
from ..criu import netns, probe
from ..criu.options import CriuOptions
from ..errors import AlreadyExists, CkptError, Interrupted, MissingDependency, UsageError
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint
from ..host import host_info, tree_rss
from ..oci.layout import Layout
from ..progress import OnProgress, Update, noop
from ..runtime.podman import Podman, PodmanContainer
from ..runtime.runc import Runc
from .home import Home, disk_errors
from .locations import RegistryOptions, preflight
from .save import SaveResult, destinations, publish_all, result, store_name_for


def save_podman(name: str, dest: str | None, *, options: CriuOptions, with_volumes: bool = False,
                compat: str | None = None, encrypt_to: Sequence[Any] = (), home: Home,
                registry: RegistryOptions = RegistryOptions(),
                on_progress: OnProgress = noop) -> SaveResult:
    podman = Podman()
    ctr = podman.container(name)
    if ctr.status not in ("running", "paused"):
        raise UsageError(f"Podman container {ctr.name!r} is {ctr.status}, not running",
                         hint="only running containers can be checkpointed")
    now = datetime.now(timezone.utc)
    dests = destinations(ctr.name, dest, now)
    namespace = netns.namespace_of(_read_spec(Path(ctr.spec_path)))
    lock = criu_config.network_lock(needs_lock=namespace != netns.HOST or options.tcp_established)
    config = _config(podman, ctr, options, now, netns.read(ctr.pid, namespace))
    store = home.store()
    for target in dests:
        preflight(target, registry=registry)

    with home.workdir("save-", size_hint=tree_rss(ctr.pid)) as work:
        export = work / "export.tar"
        criu = _criu(work, ctr.runtime, criu_config.write(work, criu_config.CriuConfig(network_lock=lock)))
        on_progress(Update("checkpoint", 0, 1, ctr.name))
        podman.checkpoint(ctr.id, export, options, with_volumes=with_volumes, criu=criu)
        on_progress(Update("checkpoint", 1, 1, ctr.name))
        try:
            root = work / "archive"
            root.mkdir()
            with disk_errors("could not store the checkpoint"):
                archive.unpack(export, root)
                desc = write_ckpt(store, root, config, on_progress=on_progress)
                shutil.rmtree(root)
            desc = publish_all(store, desc, dests, compat, registry=registry, on_progress=on_progress,
                               encrypt_to=encrypt_to)
        except BaseException as exc:
            if not options.leave_running:
                _put_back(podman, ctr, export, options, home, work, config.network)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted("save interrupted; the container was put back and nothing was tagged") from None
            raise
    return result(store, ctr.name, dests, desc, options.leave_running)


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


def _config(podman: Podman, ctr: PodmanContainer, options: CriuOptions, now: datetime,
            network: netns.NetworkState) -> CheckpointConfig:
    runtime_version = ""
    if ctr.runtime == "runc":
        try:
            runtime_version = Runc().version()
        except MissingDependency:
            pass
    return CheckpointConfig(
        engine="podman", runtime=ctr.runtime or "runc", runtime_version=runtime_version,
        criu_version=probe.version(), host=host_info(), container_id=ctr.id, container_name=ctr.name,
        created=now.strftime("%Y-%m-%dT%H:%M:%SZ"), criu_options=options,
        base_name=ctr.image_name or None, base_digest=podman.image_digest(ctr.image_id) if ctr.image_id else None,
        ckpt_version=__version__, network=network)


def _put_back(podman: Podman, ctr: PodmanContainer, export: Path, options: CriuOptions, home: Home, work: Path,
              network: netns.NetworkState | None) -> None:
    """Restore the container in place after a failure that came after the dump."""
    try:
        rollback = work / "rollback"
        rollback.mkdir(exist_ok=True)
        conf = criu_config.restore_config(rollback, network, tcp_established=options.tcp_established)
        podman.restore_in_place(ctr.id, options, criu=_criu(rollback, ctr.runtime, conf))
    except CkptError as exc:
        rescue = home.rescue_path(store_name_for(ctr.name), ".tar")
        shutil.copyfile(export, rescue)
        raise CkptError(f"save failed after the dump, and putting the container back failed too: {exc}",
                        hint=f"Podman's export was kept in {rescue}; `podman container restore --import "
                             f"{rescue}` brings the container back") from exc


def restore_podman(layout: Layout, checkpoint: Checkpoint, *, name: str | None, if_running: bool, home: Home,
                   registry: RegistryOptions = RegistryOptions(),
                   on_progress: OnProgress = noop) -> tuple[str, int, bool, tuple[str, ...]]:
    """Restore into Podman; returns (container name, pid, already running, warnings)."""
    if not has_archive(checkpoint):
        raise UsageError(why_not_podman(checkpoint))
    podman = Podman()
    container = name or checkpoint.config.container_name
    if podman.exists(container):
        ctr = podman.container(container)
        if if_running and ctr.status == "running":
            return container, ctr.pid, True, ()
        raise AlreadyExists(f"a Podman container named {container!r} exists already",
                            hint="pick another name with --name, or remove that container")
    pulled = _ensure_base(podman, checkpoint.config.base_name, insecure=registry.insecure)
    try:
        with home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
                disk_errors("could not unpack the checkpoint"):
            root = work / "archive"
            root.mkdir()
            unpack_archive_dir(layout, checkpoint, root, on_progress=on_progress)
            spec = _read_spec(root / "spec.dump")
            network = checkpoint.config.network or netns.NetworkState.assumed(spec)
            options = checkpoint.config.criu_options
            conf = criu_config.restore_config(work, network, tcp_established=options.tcp_established)
            export = work / "import.tar"
            archive.write(root, export, compression="none")
            shutil.rmtree(root)
            on_progress(Update("restore", 0, 1, container))
            imported = podman.restore_import(export, container, options,
                                             original_name=checkpoint.config.container_name,
                                             criu=_criu(work, checkpoint.config.runtime, conf))
            on_progress(Update("restore", 1, 1, container))
        ctr = podman.container(container)
    except BaseException as exc:
        if podman.exists(container):
            podman.remove(container)
        if pulled:
            podman.remove_image(pulled)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted("restore interrupted; nothing was left behind") from None
        raise
    warnings = netns.warnings_after_restore(network, ctr.pid) + ((imported.warning,) if imported.warning else ())
    return container, ctr.pid, False, warnings


def _ensure_base(podman: Podman, base: str | None, *, insecure: bool) -> str | None:
    """Make the base image present (pulling it if need be); returns its name if this pulled it."""
    if not base or podman.image_exists(base):
        return None
    podman.pull(base, tls_verify=not insecure)
    return base


def why_not_podman(checkpoint: Checkpoint) -> str:
    engine = checkpoint.config.engine
    return (f"Podman restores only from its own export archive, which needs Podman's container configuration "
            f"(config.dump) and an image to base the container on; this {engine} checkpoint has neither")
