"""Save and restore a bare process tree (no container) through CRIU's RPC interface (pycriu).

The checkpoint holds only the `criu` and `pages` roles: the processes come back on this host's
own filesystem, with their original pids, as a tree of their own (not ckpt's children).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..criu import config as criu_config
from ..criu import netns, probe, rpc
from ..criu.options import CriuOptions
from ..errors import AlreadyExists, CkptError, Interrupted
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint, unpack_images
from ..format.write import write_checkpoint
from ..host import host_info, tree_rss
from ..oci.layout import Layout
from ..progress import OnProgress, Update, noop
from .home import Home, disk_errors
from .locations import RegistryOptions, preflight
from .save import SaveResult, destinations, publish_all, result, store_name_for

ENGINE = "process"


def comm_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def save_process(pid: int, dest: str | None, *, options: CriuOptions, compat: str | None = None,
                 encrypt_to: Sequence[Any] = (), home: Home,
                 registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> SaveResult:
    name = comm_of(pid) or f"pid-{pid}"
    now = datetime.now(timezone.utc)
    dests = destinations(name, dest, now)
    # CRIU saves and restores a bare tree's own network namespace whole; ckpt only notes that it has one.
    network = netns.NetworkState(netns.PRIVATE if _own_netns(pid) else netns.HOST)
    config = CheckpointConfig(
        engine=ENGINE, runtime="none", runtime_version="", criu_version=probe.version(), host=host_info(),
        container_id=str(pid), container_name=name, created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        criu_options=options, ckpt_version=__version__, network=network)
    store = home.store()
    for target in dests:
        preflight(target, registry=registry)
    lock = _network_lock(network, options)

    with home.workdir("save-", size_hint=tree_rss(pid)) as work:
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        on_progress(Update("checkpoint", 0, 1, name))
        rpc.dump(pid, images, criu_work, options, network_lock=lock)
        on_progress(Update("checkpoint", 1, 1, name))
        try:
            with disk_errors("could not store the checkpoint"):
                desc = write_checkpoint(store, images=images, rootfs=None, spec=None, config=config,
                                        on_progress=on_progress)
            desc = publish_all(store, desc, dests, compat, registry=registry, on_progress=on_progress,
                               encrypt_to=encrypt_to)
        except BaseException as exc:
            if not options.leave_running:
                _put_back(images, work, options, name, home, lock)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted("save interrupted; the processes were put back and nothing was tagged") from None
            raise
    return result(store, name, dests, desc, options.leave_running)


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


def _put_back(images: Path, work: Path, options: CriuOptions, name: str, home: Home, lock: str | None) -> None:
    rollback = work / "rollback"
    rollback.mkdir(exist_ok=True)
    try:
        rpc.restore(images, rollback, options, network_lock=lock)
    except CkptError as exc:
        rescue = home.rescue_path(store_name_for(name))
        images.rename(rescue)
        raise CkptError(f"save failed after the dump, and putting the processes back failed too: {exc}",
                        hint=f"the CRIU images were kept in {rescue}; `criu restore -D {rescue} -d` "
                             "can bring them back") from exc


def restore_process(layout: Layout, checkpoint: Checkpoint, *, name: str | None, if_running: bool, home: Home,
                    on_progress: OnProgress = noop) -> tuple[str, int, bool]:
    """Restore the process tree; returns (name, pid of its root, already running)."""
    config = checkpoint.config
    label = name or config.container_name
    old_pid = int(config.container_id) if config.container_id.isdigit() else 0
    if old_pid and Path(f"/proc/{old_pid}").exists():
        if if_running and comm_of(old_pid) == config.container_name:
            return label, old_pid, True
        raise AlreadyExists(f"pid {old_pid} is in use here (by {comm_of(old_pid) or 'a process'}), and CRIU "
                            "restores processes with their original pids",
                            hint="stop that process first, or restore in another pid namespace")
    with home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
            disk_errors("could not unpack the checkpoint"):
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        unpack_images(layout, checkpoint, images, on_progress=on_progress)
        on_progress(Update("restore", 0, 1, label))
        lock = _network_lock(config.network, config.criu_options)
        try:
            restored = rpc.restore(images, criu_work, config.criu_options, network_lock=lock)
        except KeyboardInterrupt:
            raise Interrupted("restore interrupted") from None
        on_progress(Update("restore", 1, 1, label))
    return label, restored.pid, False
