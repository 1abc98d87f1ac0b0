"""Podman pods. Podman 4.3 has no pod checkpoint, and `podman container checkpoint A B` dumps its
containers one after the other, each running until its own turn. ckpt freezes every member behind
Podman's back, through the runc that runs them (Podman still calls them running, so its checkpoint
takes them, and CRIU leaves a frozen container frozen), locks the infra's network namespace, and
has Podman export each member (`--leave-running`, `network-lock skip`). The infra container is not
dumped: Podman makes a new one. The pod's own description (`podman pod inspect`, the infra's
`container inspect`) is kept in the pod manifest's engine layer, to make the new pod alike.

Restore: `podman pod create` with the same shared namespaces, infra image and command and network
kind; the lock in the new infra's network namespace; `podman container restore --import F --pod
ID` for each member; the lock dropped. A failure removes the new pod and everything in it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from ...compat import archive, keys
from ...compat.exportdir import POLICY, check_shape, has_archive, unpack_archive_dir
from ...compat.pod_read import loads
from ...criu import config as criu_config
from ...criu import netns
from ...errors import CorruptData, MissingDependency, NotFound, UsageError
from ...format import pod as podfmt
from ...format.read import unpack_layer
from ...format.source import BlobSource
from ...format.write import EngineFiles
from ...runtime import pod_lock
from ...runtime.podman_pod import RUNC_ROOT, Infra
from ...runtime.podman_pod import PodmanPods as Client
from ...runtime.runc import Runc
from ...timing import phase
from ..engines.base import ConfigFacts, Context, Dumped, DumpOptions
from ..home import disk_errors
from ..locks import container_lock
from ..repair import repair_images
from ..rollback import RESTORE_INTERRUPTED, undone_on_failure
from . import freeze
from .model import Frozen, Member, Pod, RestoredMember, RestoredPod, member_name

POD_INSPECT, INFRA_INSPECT = "podman-pod.json", "podman-infra.json"  # in the pod manifest's engine layer
# Podman's names for what a pod shares -> the runtime spec's; what ckpt can bring back into a new pod.
SHARE = {"net": "network", "ipc": "ipc", "uts": "uts", "pid": "pid", "cgroup": "cgroup"}
SHAREABLE = ("net", "ipc", "uts")


class PodmanPods:
    name: ClassVar[str] = "podman"

    def __init__(self, ctx: Context, podman: Client | None = None, runc: Runc | None = None,
                 host: freeze.Host = freeze.HOST) -> None:
        self.ctx, self.host = ctx, host
        self._podman, self._runc = podman, runc

    @property
    def podman(self) -> Client:
        if self._podman is None:
            self._podman = Client()
        return self._podman

    @property
    def runc(self) -> Runc:
        if self._runc is None:
            self._runc = Runc(root=self.ctx.runc_root or RUNC_ROOT)
        return self._runc

    def knows(self, name: str) -> bool:
        try:
            return bool(self.podman.pod_exists(name))
        except MissingDependency:
            return False

    # -- save ------------------------------------------------------------------------------------

    def find(self, name: str, members: Sequence[str] = ()) -> Pod:
        found = self.podman.pod(name)
        unsupported = sorted(set(found.shared) - set(SHAREABLE))
        if unsupported:
            raise UsageError(f"Podman pod {found.name!r} shares {', '.join(unsupported)} namespaces; ckpt saves pods "
                             f"that share {', '.join(SHAREABLE)} only",
                             hint="runc cannot restore into a shared cgroup namespace, and a shared pid namespace "
                                  "is not supported yet")
        infra = self.podman.infra(found.infra_id) if found.infra_id else None
        wanted = set(members)
        pod_members = []
        for container_id, container_name, _state in found.containers:
            if wanted and container_id not in wanted and container_name not in wanted:
                continue
            ctr = self.podman.container(container_id)
            if ctr.status not in ("running", "paused"):
                if wanted:
                    raise UsageError(f"Podman container {ctr.name!r} is {ctr.status}, not running")
                continue
            if ctr.runtime not in ("runc", ""):
                raise UsageError(f"Podman container {ctr.name!r} runs under {ctr.runtime}; ckpt freezes a pod's "
                                 "members through runc", hint="run the pod's containers with --runtime runc")
            spec = _read_spec(Path(ctr.spec_path)) if ctr.spec_path else {}
            pod_members.append(Member(name=member_name(ctr.name, found.name), id=ctr.name, pid=ctr.pid,
                                      namespaces=_namespaces(spec, found.shared), runtime_id=ctr.id, spec=spec))
        if not pod_members:
            raise UsageError(f"Podman pod {found.name!r} has no running container to save")
        if wanted - {m.id for m in pod_members} - {m.runtime_id for m in pod_members}:
            raise NotFound(f"Podman pod {found.name!r} has no running container "
                           f"{sorted(wanted - {m.id for m in pod_members})[0]!r}")
        files = {POD_INSPECT: found.raw, **({INFRA_INSPECT: infra.raw} if infra else {})}
        netns_pid = infra.pid if infra and "net" in found.shared and infra.pid else None
        return Pod(engine="podman", identity=podfmt.PodIdentity(found.name, found.id), members=tuple(pod_members),
                   sandbox=None, netns_pid=netns_pid, annotations=found.labels, files=files)

    def lock(self, pod: Pod) -> AbstractContextManager[None]:
        stack = ExitStack()
        for member in sorted(m.runc_id for m in pod.members):
            stack.enter_context(container_lock("podman", None, member, self.ctx.home.root))
        return stack

    def facts(self, member: Member) -> ConfigFacts:
        ctr = self.podman.container(member.runc_id)
        return ConfigFacts(engine="podman", runtime=ctr.runtime or "runc", runtime_version=self.runc.version(),
                           container_id=ctr.id, container_name=ctr.name, base_name=ctr.image_name or None,
                           base_digest=self.podman.image_digest(ctr.image_id) if ctr.image_id else None)

    def network(self, member: Member) -> netns.NetworkState:
        return netns.read(member.pid, netns.namespace_of(dict(member.spec)))

    def freeze(self, pod: Pod, work: Path, options: DumpOptions) -> AbstractContextManager[Frozen]:
        lock = self.host.lock_for(pod.netns_pid) if pod.netns_pid else None
        conf = criu_config.write(work, criu_config.CriuConfig(
            network_lock=criu_config.SKIP if lock else criu_config.network_lock(
                needs_lock=options.criu.tcp_established)))
        wrapper = criu_config.criu_wrapper(work, conf) if conf else None
        dump_options = replace(options.criu, leave_running=True)

        def dump_one(member: Member, into: Path) -> Dumped:
            export, root = into / "export.tar", into / "archive"
            self.podman.checkpoint(member.runc_id, export, dump_options, with_volumes=options.with_volumes,
                                   criu=wrapper)
            with disk_errors("could not store the checkpoint"):
                root.mkdir()
                archive.unpack(export, root)
                check_shape(root)
                export.unlink()
            spec = root / keys.SPEC_DUMP
            return Dumped(root / keys.CHECKPOINT_DIR, spec=spec.read_bytes() if spec.is_file() else None,
                          engine_files=EngineFiles(root, sorted(n for n in os.listdir(root)
                                                                if n != keys.CHECKPOINT_DIR)))

        def stop(member: Member) -> None:
            self.runc.stop(member.runc_id, member.pid)

        def stopped() -> None:
            # The saved members go; the pod too once nothing else is in it (--member: the others
            # run on in it, as do containers that were not running and so were not saved).
            for member in pod.members:
                self.podman.remove(member.runc_id)
            if self.podman.pod_exists(pod.identity.id) and not self.podman.pod(pod.identity.id).containers:
                self.podman.remove_pod(pod.identity.id)

        return freeze.frozen(self.runc, pod, work, leave_running=options.criu.leave_running, dump_one=dump_one,
                             stop=stop, stopped=stopped, on_progress=self.ctx.on_progress, lock=lock, host=self.host)

    # -- restore ---------------------------------------------------------------------------------

    def why_not(self, pod: podfmt.PodCheckpoint) -> str | None:
        if pod.config.engine != "podman":
            return f"Podman restores only its own pods; this is a {pod.config.engine} pod checkpoint"
        for name, checkpoint in pod.checkpoints.items():
            if not has_archive(checkpoint):
                return f"member {name!r} carries no Podman export archive"
        return None

    def restore(self, source: BlobSource, pod: podfmt.PodCheckpoint, name: str | None) -> RestoredPod:
        config = pod.config
        new = name or config.pod.name
        renamed = new != config.pod.name
        if renamed and config.criu_options.tcp_established:
            raise UsageError(f"Podman restores established TCP connections only under the containers' own names, "
                             f"not in a pod named {new!r}", hint="leave --name out, or save the pod without "
                                                                   "--tcp-established")
        with tempfile.TemporaryDirectory(prefix=".pod-files-", dir=self.ctx.home.root) as tmp:
            for layer in pod.engine_layers(source):
                unpack_layer(source, layer, Path(tmp), POLICY)
            infra = _infra_from(Path(tmp) / INFRA_INSPECT)
            inspected = Path(tmp) / POD_INSPECT
            saved = loads(inspected.read_bytes(), POD_INSPECT) if inspected.is_file() else {}
        saved = saved[0] if isinstance(saved, list) and saved else saved
        if not isinstance(saved, dict):
            raise CorruptData(f"the pod checkpoint's {POD_INSPECT} is not a JSON object")
        share = tuple(s for s in (saved.get("SharedNamespaces") or SHAREABLE) if s in SHAREABLE)
        names = {m.name: (f"{new}-{m.name}" if renamed else None) for m in config.members}
        pulled = [image for image in {infra.image, *(c.config.base_name for c in pod.checkpoints.values())}
                  if image and _ensure_image(self.podman, image, insecure=self.ctx.insecure)]
        held: list[tuple[pod_lock.NetnsLock, Any]] = []
        created: list[str] = []

        def remove() -> None:
            if created:
                self.podman.remove_pod(created[0])
            for lock, guard in held:
                lock.unlock(missing_ok=True)
                guard.keep()
            for image in pulled:
                self.podman.remove_image(image)

        members = []
        with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED):
            pod_id = self.podman.create_pod(new, share=share, infra=infra, labels=dict(config.annotations))
            created.append(pod_id)
            self.podman.start_pod(pod_id)
            infra_pid = self.podman.infra(self.podman.pod(pod_id).infra_id).pid
            if "net" in share and config.network_lock == podfmt.LOCK_POD:
                lock = self.host.lock_for(infra_pid)
                held.append((lock, self.host.guard(runc=freeze.runc_argv(self.runc), resume=[], lock=lock)))
                with phase("lock network"):
                    lock.lock()
            for member_name_ in config.restore_order:
                checkpoint = pod.checkpoints[member_name_]
                with self.ctx.home.workdir("restore-", size_hint=checkpoint.images_size()) as work, \
                        disk_errors("could not unpack the checkpoint"), phase(f"restore {member_name_}"):
                    root = work / "archive"
                    root.mkdir()
                    unpack_archive_dir(source, checkpoint, root, on_progress=self.ctx.on_progress)
                    repair_images(root / keys.CHECKPOINT_DIR)
                    export = work / "import.tar"
                    archive.write(root, export, compression="none")
                    shutil.rmtree(root)
                    conf = criu_config.write(work, criu_config.CriuConfig(network_lock=criu_config.SKIP)) \
                        if held else None
                    wrapper = criu_config.criu_wrapper(work, conf) if conf else None
                    self.podman.restore_into_pod(export, pod_id, names[member_name_], checkpoint.config.criu_options,
                                                 criu=wrapper)
                container = names[member_name_] or checkpoint.config.container_name
                ctr = self.podman.container(container)
                network = checkpoint.config.network
                warnings = netns.warnings_after_restore(network, ctr.pid) if network else ()
                members.append(RestoredMember(member_name_, ctr.name, ctr.pid, warnings))
            for lock, guard in held:
                with phase("unlock network"):
                    lock.unlock()
                guard.keep()
            held.clear()
        return RestoredPod(new, tuple(members))


def _infra_from(path: Path) -> Infra:
    try:
        obj = json.loads(path.read_text())[0]
    except (OSError, ValueError, IndexError, KeyError, TypeError, RecursionError):
        return Infra(image="", command=(), network="", pid=0)
    if not isinstance(obj, dict):
        return Infra(image="", command=(), network="", pid=0)
    entrypoint = (obj.get("Config") or {}).get("Entrypoint") or []
    entrypoint = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
    return Infra(image=str(obj.get("ImageName") or ""), command=tuple(entrypoint),
                 network=str((obj.get("HostConfig") or {}).get("NetworkMode") or ""), pid=0)


def _ensure_image(podman: Any, image: str, *, insecure: bool) -> bool:
    """Make `image` present; whether this pulled it."""
    if podman.image_exists(image):
        return False
    podman.pull(image, tls_verify=not insecure)
    return True


def _namespaces(spec: dict[str, Any], shared: Sequence[str]) -> dict[str, str]:
    """A member's namespaces: those the pod shares are the infra's, which Podman recreates."""
    out = {kind: podfmt.HOST for kind in podfmt.NAMESPACE_TYPES}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and ns.get("type") in out:
            out[ns["type"]] = podfmt.OWN
    for name in shared:
        if name in SHARE:
            out[SHARE[name]] = podfmt.ENGINE_SANDBOX
    return out


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}

