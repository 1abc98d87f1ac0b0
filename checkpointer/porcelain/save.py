"""`ckpt save`: checkpoint a runc or Podman container, or a bare process tree, into the store, an
OCI layout, a registry or an archive. This module picks the engine and saves runc containers;
podman.py and process.py save the others.

Ordering is what keeps the promises. A runc container is paused and dumped with CRIU's
leave-running, so it stays frozen, not gone, until the checkpoint is safely at its destination
(the tag is written only after every blob is stored); only then is it stopped (or resumed, with
--leave-running). A failure or Ctrl-C resumes it; so does a guard process if ckpt itself is
killed (SIGKILL included). With --tcp-established the container is stopped by the dump itself,
as CRIU must keep its connections locked, and a failure after the dump restores it in place
from the images just taken.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..criu import config as criu_config
from ..criu import netns, probe
from ..criu.options import CriuOptions
from ..errors import CkptError, Interrupted, MissingDependency, NotFound, UsageError
from ..format.config import CheckpointConfig
from ..format.write import write_checkpoint
from ..host import host_info, tree_rss
from ..progress import OnProgress, Update, noop
from ..timing import phase
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..reference import Ref, StoreRef, parse
from ..runtime.runc import Runc, load_spec, rootfs_of
from .home import Home, disk_errors
from .locks import container_lock
from .referrers import subject_for
from .locations import RegistryOptions, early_upload, preflight, publish


@dataclass(frozen=True, slots=True)
class SaveResult:
    container: str
    references: tuple[str, ...]
    digest: str
    size: int  # bytes of all blobs
    left_running: bool


def store_name_for(container_id: str) -> str:
    """A local store name derived from a container id (store names are lower-case)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", container_id.lower()).strip("._-")
    return name or "checkpoint"


ENGINES = ("runc", "podman", "process")


def save(container_id: str | None, dest: str | None = None, *, pid: int | None = None, engine: str | None = None,
         runc_root: Path | None = None, options: CriuOptions = CriuOptions(), with_volumes: bool = False,
         compat: str | None = None, encrypt_to: Sequence[Any] = (), subject: str | None = None,
         home: Home | None = None, registry: RegistryOptions = RegistryOptions(),
         on_progress: OnProgress = noop) -> SaveResult:
    """Checkpoint a container (runc or Podman, found by name or id) or, with `pid`, a bare process tree.
    With `encrypt_to` (public keys) every layer is encrypted before it leaves the host."""
    home = home or Home()
    if encrypt_to and compat not in (None, "ckpt"):
        raise UsageError("--encrypt-to cannot be combined with --compat",
                         hint="encrypt the ckpt-format checkpoint, or convert it first and encrypt with skopeo")
    if compat not in (None, "ckpt"):
        from ..compat.writers import check_compat

        check_compat(compat)
    if subject and (pid is not None or engine in ("process", "podman")):
        raise UsageError("--subject is supported for runc containers")
    if pid is not None or engine == "process":
        if pid is None:
            raise UsageError("--engine process needs --pid PID")
        from .process import save_process

        return save_process(pid, dest, options=options, compat=compat, encrypt_to=encrypt_to, home=home,
                            registry=registry, on_progress=on_progress)
    if not container_id:
        raise UsageError("name a container to checkpoint, or give --pid PID for a bare process tree")
    engine = engine or detect_engine(container_id, runc_root)
    if engine == "podman":
        from .podman import save_podman

        return save_podman(container_id, dest, options=options, with_volumes=with_volumes, compat=compat,
                           encrypt_to=encrypt_to, home=home, registry=registry, on_progress=on_progress)
    if engine != "runc":
        raise UsageError(f"unknown engine {engine!r}", hint=f"one of: {', '.join(ENGINES)}")
    with container_lock("runc", runc_root, container_id, home.root):
        return _save_runc(container_id, dest, runc_root=runc_root, options=options, compat=compat,
                          encrypt_to=encrypt_to, subject=subject, home=home, registry=registry,
                          on_progress=on_progress)


def detect_engine(container: str, runc_root: Path | None) -> str:
    """runc if runc (under `runc_root`) knows the container, else podman if Podman does."""
    from ..runtime import podman

    try:
        if Runc(root=runc_root).exists(container):
            return "runc"
    except MissingDependency:
        if not podman.installed():
            raise
    if podman.installed() and podman.Podman().exists(container):
        return "podman"
    where = f" under {runc_root}" if runc_root else ""
    raise NotFound(f"no runc container {container!r}{where}, and no Podman container of that name",
                   hint="`runc list` and `podman ps` show the containers; pass --runc-root if runc keeps "
                        "them elsewhere, or --pid PID for a process that is not in a container")


def destinations(name: str, dest: str | None, now: datetime) -> list[Ref]:
    """Where a save goes: `dest`, or the local store as NAME:latest and NAME:<timestamp>."""
    if dest:
        return [parse(dest)]
    return [StoreRef(store_name_for(name)), StoreRef(store_name_for(name), now.strftime("%Y%m%dT%H%M%SZ"))]


def publish_all(store: Layout, desc: Descriptor, dests: list[Ref], compat: str | None, *,
                registry: RegistryOptions, on_progress: OnProgress, encrypt_to: Sequence[Any] = (),
                store_root: Path | None = None) -> Descriptor:
    """Convert to the `compat` shape or encrypt if asked, then tag or push the checkpoint at every
    destination. Encrypted, the plaintext blobs are dropped from the store afterwards. `store`
    may be a scratch layout; `store_root` is then the real store (see publish())."""
    if encrypt_to:
        from ..crypt import encrypt_manifest

        plaintext = {b.digest for b in store.read_manifest(desc).layers} | {desc.digest}
        with disk_errors("could not encrypt the checkpoint"):
            desc = encrypt_manifest(store, desc, encrypt_to)
        try:
            for target in dests:
                publish(store, desc, target, registry=registry, on_progress=on_progress, store_root=store_root)
        finally:
            store.discard(plaintext)  # memory in clear stays on this disk no longer than needed
        return desc
    if compat not in (None, "ckpt"):
        from ..compat.writers import write_compat
        from ..format.read import open_checkpoint

        with disk_errors("could not convert the checkpoint"):
            desc = write_compat(store, open_checkpoint(store, desc), compat, on_progress=on_progress)
    for target in dests:
        publish(store, desc, target, registry=registry, on_progress=on_progress, store_root=store_root)
    return desc


def result(store: Layout, container: str, dests: list[Ref], desc: Descriptor, left_running: bool) -> SaveResult:
    manifest = store.read_manifest(desc)
    size = manifest.total_size(desc.size)
    return SaveResult(container=container, references=tuple(str(d) for d in dests), digest=desc.digest, size=size,
                      left_running=left_running)


def _save_runc(container_id: str, dest: str | None, *, runc_root: Path | None, options: CriuOptions,
               compat: str | None, encrypt_to: Sequence[Any], subject: str | None, home: Home,
               registry: RegistryOptions, on_progress: OnProgress) -> SaveResult:
    runc = Runc(root=runc_root)
    now = datetime.now(timezone.utc)
    dests = destinations(container_id, dest, now)
    # The registry check (with the import of the HTTP stack) and the version probes run while runc
    # is asked about the container: one after the other they were a tenth of a small save. An
    # error does not wait for them (an unreachable registry can take its retries' time).
    pool = ThreadPoolExecutor(6, thread_name_prefix="preflight")
    try:
        checks = [pool.submit(preflight, target, registry=registry) for target in dests]
        runtime_version, criu_version = pool.submit(runc.version), pool.submit(probe.version)
        state = runc.state(container_id)
        if state.status not in ("running", "paused"):
            raise UsageError(f"container {container_id!r} is {state.status}, not running",
                             hint="only running containers can be checkpointed")
        spec = load_spec(state.bundle)
        rootfs = rootfs_of(state.bundle, spec)
        # CRIU drops the network namespace of a runc container (docs/network.md): its loopback is
        # recorded while the preflight runs, and brought back at restore.
        namespace = netns.namespace_of(spec)
        network = pool.submit(netns.read, state.pid, namespace)
        lock_method = pool.submit(criu_config.network_lock,
                                  needs_lock=namespace != netns.HOST or options.tcp_established)
        with phase("preflight"):
            for check in checks:
                check.result()
            subject_desc = subject_for(subject, dests, registry=registry) if subject else None
            lock = lock_method.result()  # a missing lock fails the save here, before anything is frozen
        config = CheckpointConfig(
            engine="runc", runtime="runc", runtime_version=runtime_version.result(),
            criu_version=criu_version.result(), host=host_info(), container_id=container_id,
            container_name=container_id, created=now.strftime("%Y-%m-%dT%H:%M:%SZ"), criu_options=options,
            ckpt_version=__version__)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    local = any(isinstance(d, StoreRef) for d in dests)
    store = home.store()

    size_hint = tree_rss(state.pid)
    with home.workdir("save-", size_hint=size_hint) as work:
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        criu_conf = criu_config.write(work, criu_config.CriuConfig(network_lock=lock))
        freeze = not options.tcp_established and state.status == "running"
        dump_options = replace(options, leave_running=True) if freeze else options
        guard = None
        if freeze:
            guard = runc.resume_guard(container_id, marker=str(images))
            with phase("pause"):
                runc.pause(container_id)
        try:
            # Read while the preflight and the pause ran; the namespace is there until the dump ends.
            config = replace(config, network=network.result())
            on_progress(Update("checkpoint", 0, 1, container_id))
            with phase("dump"):
                runc.checkpoint(container_id, images, criu_work, dump_options, criu_conf=criu_conf)
            on_progress(Update("checkpoint", 1, 1, container_id))
        except BaseException:
            if guard:
                guard.fire()
            raise
        try:
            packed = store if local else home.packing_layout(work, size_hint)
            with disk_errors("could not store the checkpoint"), \
                    early_upload(dests if compat in (None, "ckpt") and not encrypt_to else [], packed,
                                 registry=registry, on_progress=on_progress, store_root=store.root) as on_blob, \
                    phase("pack+upload"):
                desc = write_checkpoint(packed, images=images, rootfs=rootfs,
                                        spec=(state.bundle / "config.json").read_bytes(), config=config,
                                        subject=subject_desc, on_progress=on_progress, on_blob=on_blob)
            with phase("publish"):
                desc = publish_all(packed, desc, dests, compat, registry=registry, on_progress=on_progress,
                                   encrypt_to=encrypt_to, store_root=store.root)
                saved = result(packed, container_id, dests, desc, options.leave_running)
        except BaseException as exc:
            if guard:
                guard.fire()
            elif not options.leave_running:
                _put_back(runc, container_id, state.bundle, images, work, options, home, config.network)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted("save interrupted; the container was put back and nothing was tagged") from None
            raise
        if guard:
            if options.leave_running:
                guard.fire()
            else:
                guard.keep()
                with phase("stop"):
                    runc.stop(container_id, state.pid)
    return saved


def _put_back(runc: Runc, container_id: str, bundle: Path, images: Path, work: Path,
              options: CriuOptions, home: Home, network: netns.NetworkState | None) -> None:
    """Restore the container where it was, after a failure that came after the dump."""
    restore_work = work / "rollback"
    restore_work.mkdir(exist_ok=True)
    try:
        conf = criu_config.restore_config(restore_work, network, tcp_established=options.tcp_established)
        runc.restore(container_id, bundle, images, restore_work, options.for_restore(), criu_conf=conf)
    except CkptError as exc:
        rescue = home.rescue_path(store_name_for(container_id))
        images.rename(rescue)
        raise CkptError(f"save failed after the dump, and putting the container back failed too: {exc}",
                        hint=f"the CRIU images were kept in {rescue}; `runc restore --image-path` "
                             "can bring the container back") from exc
