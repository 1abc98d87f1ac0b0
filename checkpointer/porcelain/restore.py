"""`ckpt restore`: bring a checkpoint back as a running runc or Podman container, or a bare process
tree, on this or another host. The engine that made the checkpoint restores it by default; this
module decides, says precisely why when another engine cannot, and restores runc containers.

A runc checkpoint carries the rootfs and the runtime spec, so nothing of the original container
has to exist here. Everything restore creates (bundle, runc container) is removed again if any
step fails or is interrupted.
"""
from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..criu import config as criu_config
from ..criu import netns, probe
from ..errors import AlreadyExists, CorruptData, IncompatibleHost, Interrupted, UsageError
from ..format import roles
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint, unpack_images, unpack_layer
from ..host import HostInfo, host_info
from ..oci import tarball
from ..progress import OnProgress, Update, noop
from ..timing import phase
from ..reference import parse
from ..runtime.runc import Runc
from .home import Home, disk_errors
from .locks import container_lock
from .prefetch import ImagePrefetch
from ..oci.layout import Layout
from .locations import RegistryOptions, open_source


@dataclass(frozen=True, slots=True)
class RestoreResult:
    container: str
    pid: int
    bundle: Path | None  # runc only: where the restored container's bundle lives
    digest: str
    already_running: bool = False
    engine: str = "runc"
    warnings: tuple[str, ...] = ()  # what did not come back as it was (the container runs)


ENGINES = ("runc", "podman", "process")
# Where the engines keep per-container files that their specs bind into containers.
_ENGINE_PATHS = ("/var/run/containers/", "/run/containers/", "/var/lib/containers/", "/var/lib/kubelet/",
                 "/run/containerd/", "/var/lib/containerd/", "/var/run/crio/", "/run/crio/")


def incompatibilities(config: CheckpointConfig, here: HostInfo, criu_version: str) -> list[str]:
    """What keeps this host from running the checkpoint; empty when it can."""
    problems = []
    if config.host.arch != here.arch:
        problems.append(f"architecture: checkpoint is {config.host.arch or 'unknown'}, this host is {here.arch}")
    missing = sorted(set(config.host.cpu_flags) - set(here.cpu_flags))
    if missing and here.cpu_flags:
        problems.append(f"CPU features missing here: {' '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if probe.parse_version(criu_version) < probe.parse_version(config.criu_version)[:2]:
        problems.append(f"CRIU {criu_version} is older than the {config.criu_version} that took the checkpoint")
    if config.engine == "runc" and config.runtime != "runc":
        problems.append(f"the checkpoint is for the {config.runtime} runtime; this version restores into runc")
    return problems


def default_engine(checkpoint: Checkpoint) -> str:
    """The engine a checkpoint goes back into unless told otherwise: the one that made it."""
    engine = checkpoint.config.engine
    if engine == "podman" and not checkpoint.layers(roles.ENGINE) and checkpoint.layer(roles.ROOTFS):
        return "runc"  # published by a runtime hook: a full rootfs and a spec, none of Podman's files
    return engine if engine in ENGINES else "runc"


def why_not(checkpoint: Checkpoint, target: str, spec: dict | None = None) -> str | None:
    """Why `checkpoint` cannot be restored into `target`, precisely; None when it can. `spec`, the
    checkpoint's runtime spec, lets the answer name the engine's files it binds."""
    engine = checkpoint.config.engine
    if target == "process":
        if engine == "process":
            return None
        return (f"a {engine} checkpoint holds a container, whose processes need the container's root "
                "filesystem, mounts and namespaces; only a container runtime sets those up")
    if engine == "process":
        return ("a bare process checkpoint has no root filesystem and no runtime spec to make a container "
                "from; its processes come back on this host's own filesystem with --engine process")
    if target == "podman":
        if engine == "podman":
            return None
        if engine == "runc":
            return ("Podman restores only from its own export archive, which needs Podman's container "
                    "configuration (config.dump in libpod's format) and an image to base the container on; "
                    "a runc checkpoint carries a full root filesystem and a runtime spec instead")
        return (f"Podman restores only its own checkpoints: the config.dump of this {engine} checkpoint is "
                f"{engine}'s, not libpod's container configuration")
    return _why_not_runc(checkpoint, spec or {})


def _why_not_runc(checkpoint: Checkpoint, spec: dict) -> str | None:
    spec_layer, rootfs_layer = checkpoint.layer(roles.SPEC), checkpoint.layer(roles.ROOTFS)
    if spec_layer and rootfs_layer:
        return None
    engine, base = checkpoint.config.engine, checkpoint.config.base_name
    missing = []
    if rootfs_layer is None:
        if checkpoint.layers(roles.ENGINE):
            missing.append("a full root filesystem (it has only rootfs-diff.tar, the container's changes to the "
                           f"image {base or '(not named)'}, and runc needs the whole tree)")
        else:
            missing.append("a root filesystem")
    if spec_layer is None:
        missing.append("a runtime spec (spec.dump / config.json)")
    text = f"this {engine} checkpoint cannot be restored into runc: it lacks " + " and ".join(missing)
    if spec_layer is not None and engine != "runc":
        binds = [str(m.get("source", "")) for m in spec.get("mounts", []) or []
                 if isinstance(m, dict) and str(m.get("source", "")).startswith(_ENGINE_PATHS)]
        if binds:
            text += (f"; also, its runtime spec binds files the {engine} host kept for the container "
                     f"({', '.join(binds[:4])}{' ...' if len(binds) > 4 else ''}), which do not exist here")
    return text


def restore(ref: str, *, name: str | None = None, engine: str | None = None, runc_root: Path | None = None,
            home: Home | None = None, force: bool = False, if_running: bool = False,
            decrypt_keys: Sequence[Any] = (), registry: RegistryOptions = RegistryOptions(),
            on_progress: OnProgress = noop) -> RestoreResult:
    """Restore the checkpoint `ref` into `engine` (default: the engine that made it); an encrypted
    one is decrypted with `decrypt_keys` while it is read."""
    home = home or Home()
    if engine is not None and engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", hint=f"one of: {', '.join(ENGINES)}")
    with ImagePrefetch(home) as prefetch, \
            open_source(parse(ref), home, registry=registry, on_progress=on_progress, decrypt_keys=decrypt_keys,
                        prefetch=prefetch) as source:
        checkpoint, layout = source.checkpoint, source.layout
        target = engine or default_engine(checkpoint)
        problem = why_not_restorable(layout, checkpoint, target)
        if problem:
            raise UsageError(problem, hint=_hint(checkpoint, target))
        digest = source.descriptor.digest
        if target == "podman":
            from .podman import restore_podman

            _check_host(checkpoint, force)
            container, pid, already, warnings = restore_podman(layout, checkpoint, name=name, if_running=if_running,
                                                               home=home, registry=registry, on_progress=on_progress)
            return RestoreResult(container, pid, None, digest, already_running=already, engine="podman",
                                 warnings=warnings)
        if target == "process":
            from .process import restore_process

            _check_host(checkpoint, force)
            container, pid, already = restore_process(layout, checkpoint, name=name, if_running=if_running,
                                                      home=home, on_progress=on_progress)
            return RestoreResult(container, pid, None, digest, already_running=already, engine="process")
        with container_lock("runc", runc_root, name or checkpoint.config.container_id, home.root):
            return _restore_runc(layout, checkpoint, digest, name=name, runc_root=runc_root, home=home,
                                 force=force, if_running=if_running, on_progress=on_progress,
                                 prefetched=prefetch.images_for(checkpoint.manifest),
                                 rootfs=_staged_rootfs(prefetch, checkpoint))


def _staged_rootfs(prefetch: ImagePrefetch, checkpoint: Checkpoint) -> Path | None:
    layer = checkpoint.layer(roles.ROOTFS)
    return prefetch.rootfs_for(layer) if layer is not None else None


def why_not_restorable(layout: Layout, checkpoint: Checkpoint, target: str) -> str | None:
    spec_layer, spec = checkpoint.layer(roles.SPEC), None
    if target == "runc" and spec_layer is not None and checkpoint.config.engine != "runc":
        try:
            spec = json.loads(layout.read_blob(spec_layer))
        except ValueError:
            spec = None
    return why_not(checkpoint, target, spec if isinstance(spec, dict) else None)


def _hint(checkpoint: Checkpoint, target: str) -> str:
    engine = checkpoint.config.engine
    if engine in ENGINES and engine != target:
        return f"restore it with --engine {engine}, or leave --engine out"
    if engine == "cri-o":
        return ("restore it with CRI-O: `ckpt convert REF DEST --compat cri-o` makes an image CRI-O restores, "
                "or `ckpt export REF FILE.tar` an archive")
    if engine == "containerd":
        return "restore it with containerd (`ckpt export REF FILE.tar` gives its archive back)"
    return "restore it with the engine that made it"


def _check_host(checkpoint: Checkpoint, force: bool) -> None:
    problems = incompatibilities(checkpoint.config, host_info(), probe.version())
    if problems and not force:
        raise IncompatibleHost("this host cannot take the checkpoint: " + "; ".join(problems),
                               hint="--force tries anyway")


def _restore_runc(layout: Layout, checkpoint: Checkpoint, digest: str, *, name: str | None,
                  runc_root: Path | None, home: Home, force: bool, if_running: bool,
                  on_progress: OnProgress,
                  prefetched: tuple[Path, frozenset[str]] | None = None,
                  rootfs: Path | None = None) -> RestoreResult:
    """`prefetched` and `rootfs`: the image directory and the root filesystem, if they were
    unpacked while the checkpoint downloaded."""
    runc = Runc(root=runc_root)
    container = name or checkpoint.config.container_id
    bundle = home.bundle_path(container)
    if runc.exists(container):
        state = runc.state(container)
        if if_running and state.status == "running":
            return RestoreResult(container, state.pid, state.bundle, digest, already_running=True)
        if state.status != "running" and state.bundle == bundle:
            runc.delete(container)  # a restore of ours that was killed half-way: start again
        else:
            raise AlreadyExists(f"a runc container named {container!r} exists already",
                                hint="pick another name with --name, or remove that container")
    _check_host(checkpoint, force)
    if bundle.exists():
        shutil.rmtree(bundle)  # left by a restore that was killed; no runc container uses it
    try:
        with ExitStack() as stack, disk_errors("could not unpack the checkpoint"):
            if prefetched:  # memory was unpacked while it downloaded
                work, placed = prefetched
            else:
                work = stack.enter_context(home.workdir("restore-", size_hint=checkpoint.images_size()))
                placed = frozenset()
                (work / "images").mkdir()
            with phase("unpack rootfs"):
                spec = _prepare_bundle(layout, checkpoint, bundle, on_progress, rootfs)
            network = checkpoint.config.network or netns.NetworkState.assumed(spec)
            options = checkpoint.config.criu_options
            criu_conf = criu_config.restore_config(work, network, tcp_established=options.tcp_established)
            images = work / "images"
            with phase("unpack images"):
                unpack_images(layout, checkpoint, images, on_progress=on_progress, placed=placed)
            (work / "criu").mkdir()
            on_progress(Update("restore", 0, 1, container))
            with phase("runc restore"):
                state = runc.restore(container, bundle, images, work / "criu", options, criu_conf=criu_conf)
            on_progress(Update("restore", 1, 1, container))
    except BaseException as exc:
        if runc.exists(container):
            runc.delete(container)
        shutil.rmtree(bundle, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted("restore interrupted; nothing was left behind") from None
        raise
    warnings = netns.warnings_after_restore(network, state.pid)
    return RestoreResult(container, state.pid, bundle, digest, warnings=warnings)


def _prepare_bundle(layout, checkpoint: Checkpoint, bundle: Path, on_progress: OnProgress,  # noqa: ANN001
                    unpacked: Path | None = None) -> dict:
    spec_layer = checkpoint.layer(roles.SPEC)
    rootfs_layer = checkpoint.layer(roles.ROOTFS)
    if spec_layer is None or rootfs_layer is None:
        raise UsageError("this checkpoint carries no rootfs or runtime spec, so it cannot be restored "
                                "into a new runc container", hint="restore it on the host that made it")
    try:
        spec = json.loads(layout.read_blob(spec_layer))
        spec["root"] = {**spec.get("root", {}), "path": "rootfs"}
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
        on_progress(Update("unpack rootfs", 0, rootfs_layer.size))
        unpack_layer(layout, rootfs_layer, bundle / "rootfs", tarball.ROOTFS)
        on_progress(Update("unpack rootfs", rootfs_layer.size, rootfs_layer.size))
    (bundle / "config.json").write_text(json.dumps(spec, indent=2))
    return spec
