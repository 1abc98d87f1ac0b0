"""`ckpt restore`: bring a checkpoint back as a running runc container, on this or another host.

The checkpoint carries the rootfs and the runtime spec, so nothing of the original container
has to exist here. Everything restore creates (bundle, runc container) is removed again if any
step fails or is interrupted.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..criu import probe
from ..errors import AlreadyExists, CorruptData, IncompatibleHost, Interrupted, UsageError
from ..format import roles
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint, open_checkpoint, unpack_images, unpack_layer
from ..host import HostInfo, host_info
from ..oci import tarball
from ..progress import OnProgress, Update, noop
from ..reference import parse
from ..runtime.runc import Runc
from .home import Home, disk_errors
from .locations import RegistryOptions, resolve_source


@dataclass(frozen=True, slots=True)
class RestoreResult:
    container: str
    pid: int
    bundle: Path
    digest: str
    already_running: bool = False


def incompatibilities(config: CheckpointConfig, here: HostInfo, criu_version: str) -> list[str]:
    """What keeps this host from running the checkpoint; empty when it can."""
    problems = []
    if config.host.arch != here.arch:
        problems.append(f"architecture: checkpoint is {config.host.arch}, this host is {here.arch}")
    missing = sorted(set(config.host.cpu_flags) - set(here.cpu_flags))
    if missing and here.cpu_flags:
        problems.append(f"CPU features missing here: {' '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if probe.parse_version(criu_version) < probe.parse_version(config.criu_version)[:2]:
        problems.append(f"CRIU {criu_version} is older than the {config.criu_version} that took the checkpoint")
    if config.runtime != "runc":
        problems.append(f"the checkpoint is for the {config.runtime} runtime; this version restores into runc")
    return problems


def restore(ref: str, *, name: str | None = None, runc_root: Path | None = None, home: Home | None = None,
            force: bool = False, if_running: bool = False, registry: RegistryOptions = RegistryOptions(),
            on_progress: OnProgress = noop) -> RestoreResult:
    home = home or Home()
    runc = Runc(root=runc_root)
    layout, desc = resolve_source(parse(ref), home, registry=registry, on_progress=on_progress)
    checkpoint = open_checkpoint(layout, desc)
    container = name or checkpoint.config.container_id
    if runc.exists(container):
        state = runc.state(container)
        if if_running and state.status == "running":
            return RestoreResult(container, state.pid, state.bundle, desc.digest, already_running=True)
        raise AlreadyExists(f"a runc container named {container!r} exists already",
                            hint="pick another name with --name, or remove that container")
    problems = incompatibilities(checkpoint.config, host_info(), probe.version())
    if problems and not force:
        raise IncompatibleHost("this host cannot take the checkpoint: " + "; ".join(problems),
                               hint="--force tries anyway")
    bundle = home.bundle_path(container)
    if bundle.exists():
        shutil.rmtree(bundle)  # left by a restore that was killed; no runc container uses it
    try:
        with home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
                disk_errors("could not unpack the checkpoint"):
            _prepare_bundle(layout, checkpoint, bundle, on_progress)
            images = work / "images"
            images.mkdir()
            unpack_images(layout, checkpoint, images, on_progress=on_progress)
            (work / "criu").mkdir()
            on_progress(Update("restore", 0, 1, container))
            state = runc.restore(container, bundle, images, work / "criu", checkpoint.config.criu_options)
            on_progress(Update("restore", 1, 1, container))
    except BaseException as exc:
        if runc.exists(container):
            runc.delete(container)
        shutil.rmtree(bundle, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted("restore interrupted; nothing was left behind") from None
        raise
    return RestoreResult(container, state.pid, bundle, desc.digest)


def _prepare_bundle(layout, checkpoint: Checkpoint, bundle: Path, on_progress: OnProgress) -> None:  # noqa: ANN001
    spec_layer = checkpoint.layer(roles.SPEC)
    rootfs_layer = checkpoint.layer(roles.ROOTFS)
    if spec_layer is None or rootfs_layer is None:
        raise UsageError("this checkpoint carries no rootfs or runtime spec, so it cannot be restored "
                                "into a new runc container", hint="restore it on the host that made it")
    try:
        spec = json.loads(layout.read_blob(spec_layer))
        spec["root"] = {**spec.get("root", {}), "path": "rootfs"}
    except (ValueError, TypeError, AttributeError) as exc:
        raise CorruptData(f"the runtime spec in the checkpoint is malformed: {exc}") from None
    (bundle / "rootfs").mkdir(parents=True)
    on_progress(Update("unpack rootfs", 0, rootfs_layer.size))
    unpack_layer(layout, rootfs_layer, bundle / "rootfs", tarball.ROOTFS)
    on_progress(Update("unpack rootfs", rootfs_layer.size, rootfs_layer.size))
    (bundle / "config.json").write_text(json.dumps(spec, indent=2))
