"""runc pods: a sandbox container that owns its namespaces (a pause process holding network, ipc and
uts), and the containers whose specs join them by path (`linux.namespaces[].path`, such as
/proc/<sandbox pid>/ns/net). ckpt finds the members by the namespaces' inodes, not by the paths'
text, so a bind-mounted namespace file counts too.

    ckpt save --pod web REF        web: the sandbox's id, or its `dev.ckpt.pod.name` annotation

Save: every member frozen, the pod's network locked, each dumped with CRIU's leave-running (so it
stays frozen) and `network-lock skip`; stopped only once the pod checkpoint is stored.
Restore: the sandbox first (its loopback comes back through the network script, docs/network.md),
the lock in its new network namespace, then each member with its spec's namespace paths pointed at
the new sandbox, then the lock is dropped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...criu import config as criu_config
from ...criu import netns
from ...errors import AlreadyExists, NotFound, UsageError
from ...format import pod as podfmt
from ...format.read import Checkpoint
from ...format.source import BlobSource
from ...runtime import pod_lock
from ...runtime.runc import ContainerState, Runc, criu_leaves_tmp_as_it_was, load_spec, rootfs_of
from ...timing import phase
from ..deliveries import discard
from ..engines.base import ConfigFacts, Context, Dumped, DumpOptions, Restored, Staged
from ..engines.placement import Placement
from ..engines.runc import RuncEngine
from ..locks import container_lock
from ..rollback import RESTORE_INTERRUPTED, undone_on_failure
from . import freeze
from .model import Frozen, Member, Pod, RestoredMember, RestoredPod, member_name, restored_id

if TYPE_CHECKING:
    from .restore import LazyMembers

# Restores one member with the engine given (its placement in the pod set): what it restored, and
# its page delivery's id when restored lazily.
RestoreMember = Callable[[RuncEngine, Checkpoint, str], tuple[Restored, str | None]]
POD_NAME_KEY = "dev.ckpt.pod.name"  # on the sandbox's spec: the pod's name (default: the sandbox's id)
# The runtime-spec namespace types and their files under /proc/PID/ns.
NS_FILES = {"network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid", "mount": "mnt", "cgroup": "cgroup",
            "user": "user", "time": "time"}
# What members may share with the sandbox. runc 1.1 cannot restore into a cgroup namespace named by
# path, and a shared pid namespace would need the sandbox's pids restored first (not in v1).
SHAREABLE = ("network", "ipc", "uts")


@dataclass(frozen=True, slots=True)
class RuncMember(Member):
    bundle: Path = Path()
    spec_bytes: bytes = b""


def _ns_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _spec_namespaces(spec: dict[str, Any]) -> dict[str, str | None]:
    """type -> the path the spec joins (None: a namespace of its own); types it lacks are the host's."""
    out: dict[str, str | None] = {}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and isinstance(ns.get("type"), str):
            out[ns["type"]] = ns.get("path") or None
    return out


def sysv_objects(pid: int) -> int | None:
    """SysV IPC objects (shm, sem, msg) in the IPC namespace of `pid`; None if it cannot tell."""
    nsenter = shutil.which("nsenter")
    if not nsenter:
        return None
    try:
        res = subprocess.run([nsenter, f"--ipc=/proc/{pid}/ns/ipc", "--", "cat", "/proc/sysvipc/shm",
                              "/proc/sysvipc/sem", "/proc/sysvipc/msg"], capture_output=True, text=True,
                             timeout=10, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    return max(0, len(lines) - 3)  # each file has a header line


class RuncPods:
    name: ClassVar[str] = "runc"

    def __init__(self, ctx: Context, runc: Runc | None = None, host: freeze.Host = freeze.HOST) -> None:
        self.ctx, self.host = ctx, host
        self._runc = runc

    @property
    def runc(self) -> Runc:
        if self._runc is None:
            self._runc = Runc(root=self.ctx.runc_root)
        return self._runc

    def _containers(self) -> list[tuple[ContainerState, dict[str, Any]]]:
        found = []
        for state in self.runc.list():
            if state.status not in ("running", "paused"):
                continue
            try:
                found.append((state, load_spec(state.bundle)))
            except Exception:  # a bundle that went away meanwhile: not a container to save
                continue
        return found

    def _sandbox(self, name: str, containers: list[tuple[ContainerState, dict[str, Any]]]) \
            -> tuple[ContainerState, dict[str, Any]] | None:
        by_id = [c for c in containers if c[0].id == name]
        if by_id:
            return by_id[0]
        named = [c for c in containers if (c[1].get("annotations") or {}).get(POD_NAME_KEY) == name
                 and _spec_namespaces(c[1]).get("network", "host") is None]
        if len(named) > 1:
            raise UsageError(f"{len(named)} runc containers say they are the sandbox of pod {name!r} "
                             f"({', '.join(c[0].id for c in named)})", hint="name the sandbox by its id")
        return named[0] if named else None

    def knows(self, name: str) -> bool:
        return self._sandbox(name, self._containers()) is not None

    # -- save ------------------------------------------------------------------------------------

    def find(self, name: str, members: Sequence[str] = ()) -> Pod:
        containers = self._containers()
        found = self._sandbox(name, containers)
        if found is None:
            where = f" under {self.ctx.runc_root}" if self.ctx.runc_root else ""
            raise NotFound(f"no running runc container {name!r}{where}, and none whose {POD_NAME_KEY} annotation "
                           "names that pod", hint="`runc list` shows the containers; a pod is saved by its "
                                                  "sandbox's id (the container the others join)")
        sandbox, sandbox_spec = found
        pod_name = (sandbox_spec.get("annotations") or {}).get(POD_NAME_KEY) or sandbox.id
        owned = {kind: _ns_key(f"/proc/{sandbox.pid}/ns/{NS_FILES[kind]}")
                 for kind, path in _spec_namespaces(sandbox_spec).items() if path is None and kind in NS_FILES}
        host = {kind: _ns_key(f"/proc/self/ns/{file}") for kind, file in NS_FILES.items()}
        sandbox_name = member_name(sandbox.id, pod_name)
        joiners = []
        for state, spec in containers:
            if state.id == sandbox.id:
                continue
            joined = {kind: _ns_key(path) for kind, path in _spec_namespaces(spec).items() if path}
            if any(key is not None and owned.get(kind) == key for kind, key in joined.items()):
                joiners.append((state, spec, joined))
            elif state.id in members:
                raise UsageError(f"runc container {state.id!r} joins none of the namespaces of the sandbox "
                                 f"{sandbox.id!r}", hint="a member of a pod joins its sandbox's namespaces by path")
        wanted = set(members) or {state.id for state, _, _ in joiners}
        missing = wanted - {state.id for state, _, _ in joiners}
        if missing:
            raise NotFound(f"no running runc container {sorted(missing)[0]!r} in pod {pod_name!r}",
                           hint="`runc list` shows the containers")
        if not joiners or not wanted:
            raise UsageError(f"no runc container joins the namespaces of {sandbox.id!r}: it is no pod",
                             hint="save a single container with `ckpt save ID`")
        pod_members = [self._member(sandbox, sandbox_spec, sandbox_name, {}, owned, host, sandbox_name, pod_name)]
        for state, spec, joined in joiners:
            if state.id in wanted:
                pod_members.append(self._member(state, spec, member_name(state.id, pod_name), joined, owned, host,
                                                sandbox_name, pod_name))
        self._refuse_shared_ipc(sandbox, owned, pod_members)
        return Pod(engine="runc", identity=podfmt.PodIdentity(pod_name, sandbox.id), members=tuple(pod_members),
                   sandbox=sandbox_name, netns_pid=sandbox.pid if "network" in owned else None,
                   annotations={k: str(v) for k, v in (sandbox_spec.get("annotations") or {}).items()})

    def _member(self, state: ContainerState, spec: dict[str, Any], name: str, joined: dict[str, Any],
                owned: dict[str, Any], host: dict[str, Any], sandbox_name: str, pod_name: str) -> RuncMember:
        namespaces = {}
        for kind, path in _spec_namespaces(spec).items():
            if kind not in podfmt.NAMESPACE_TYPES:
                continue
            if path is None:
                namespaces[kind] = podfmt.OWN
            elif joined.get(kind) is not None and joined[kind] == owned.get(kind):
                if kind not in SHAREABLE:
                    raise UsageError(f"container {state.id!r} shares the {kind} namespace of the sandbox; ckpt "
                                     f"saves pods whose members share {', '.join(SHAREABLE)} only",
                                     hint="runc cannot restore a container into a cgroup namespace named by path, "
                                          "and a shared pid namespace is not supported yet")
                namespaces[kind] = sandbox_name
            elif joined.get(kind) is not None and joined[kind] == host.get(kind):
                namespaces[kind] = podfmt.HOST
            else:
                raise UsageError(f"container {state.id!r} joins a {kind} namespace ({path}) that no member of pod "
                                 f"{pod_name!r} owns", hint="its owner would have to be part of the pod")
        for kind in podfmt.NAMESPACE_TYPES:
            namespaces.setdefault(kind, podfmt.HOST)
        if not podfmt._NAME.fullmatch(name):
            raise UsageError(f"container {state.id!r} has no name ckpt can use in a pod ({name!r})")
        spec_bytes = (state.bundle / "config.json").read_bytes()
        return RuncMember(name=name, id=state.id, pid=state.pid, namespaces=namespaces, spec=spec,
                          bundle=state.bundle, spec_bytes=spec_bytes)

    def _refuse_shared_ipc(self, sandbox: ContainerState, owned: dict[str, Any], members: list[RuncMember]) -> None:
        """SysV objects in a shared IPC namespace would be dumped by every member that joins it, and
        each member's restore would make them again: refused until that is handled."""
        if "ipc" not in owned or not any(m.namespaces.get("ipc") not in (podfmt.OWN, podfmt.HOST)
                                         for m in members[1:]):
            return
        count = sysv_objects(sandbox.pid)
        if count:
            raise UsageError(f"the pod's shared IPC namespace holds {count} SysV IPC objects (shared memory, "
                             "semaphores or message queues), which ckpt cannot save for several containers at once",
                             hint="POSIX shared memory (/dev/shm) is fine; SysV objects in a shared IPC namespace "
                                  "are not supported yet")

    def lock(self, pod: Pod) -> AbstractContextManager[None]:
        stack = ExitStack()
        for member_id in sorted(m.id for m in pod.members):
            stack.enter_context(container_lock("runc", self.ctx.runc_root, member_id, self.ctx.home.root))
        return stack

    def facts(self, member: Member) -> ConfigFacts:
        return ConfigFacts(engine="runc", runtime="runc", runtime_version=self.runc.version(),
                           container_id=member.id, container_name=member.id)

    def network(self, member: Member) -> netns.NetworkState:
        return netns.read(member.pid, netns.namespace_of(dict(member.spec)))

    def freeze(self, pod: Pod, work: Path, options: DumpOptions) -> AbstractContextManager[Frozen]:
        lock = self.host.lock_for(pod.netns_pid) if pod.netns_pid else None
        conf = criu_config.write(work, criu_config.CriuConfig(
            network_lock=criu_config.SKIP if lock else criu_config.network_lock(
                needs_lock=options.criu.tcp_established)))
        dump_options = replace(options.criu, leave_running=True)

        def dump_one(member: Member, into: Path) -> Dumped:
            assert isinstance(member, RuncMember)
            images, criu_work = into / "images", into / "criu"
            images.mkdir()
            criu_work.mkdir()
            rootfs = rootfs_of(member.bundle, dict(member.spec))
            with criu_leaves_tmp_as_it_was(rootfs):
                self.runc.checkpoint(member.id, images, criu_work, dump_options, criu_conf=conf)
            return Dumped(images, rootfs=rootfs, spec=member.spec_bytes)

        def stop(member: Member) -> None:
            self.runc.stop(member.id, member.pid)

        return freeze.frozen(self.runc, pod, work, leave_running=options.criu.leave_running, dump_one=dump_one,
                             stop=stop, on_progress=self.ctx.on_progress, lock=lock, host=self.host)

    # -- restore ---------------------------------------------------------------------------------

    def why_not(self, pod: podfmt.PodCheckpoint) -> str | None:
        config = pod.config
        if config.sandbox is None:
            return (f"this {config.engine} pod checkpoint has no sandbox among its members ({config.engine} "
                    "recreates its own), so runc has nothing to join the members to")
        for member in config.members:
            checkpoint = pod.checkpoints[member.name]
            if checkpoint.layer("spec") is None or checkpoint.layer("rootfs") is None:
                return (f"member {member.name!r} has no root filesystem and runtime spec to make a runc container "
                        f"from (a {checkpoint.config.engine} checkpoint)")
            shared = set(member.joins())
            if shared - set(SHAREABLE):
                return f"member {member.name!r} shares namespaces runc cannot restore into: {sorted(shared)}"
        return None

    def restore(self, source: BlobSource, pod: podfmt.PodCheckpoint, name: str | None) -> RestoredPod:
        def member(engine: RuncEngine, checkpoint: Checkpoint, container: str) -> tuple[Restored, str | None]:
            return engine.restore(source, checkpoint, container, Staged()), None

        return self._restore_all(pod, name, member)

    def restore_lazy(self, pod: podfmt.PodCheckpoint, name: str | None, lazy: LazyMembers) -> RestoredPod:
        """As restore, each member through `runc restore --lazy-pages` with a page supervisor of its
        own (`lazy.start`), its memory read from where the pod was read, on demand."""

        running: list[Path] = []  # the work directories of the members restored so far

        def member(engine: RuncEngine, checkpoint: Checkpoint, container: str) -> tuple[Restored, str | None]:
            source, pages = lazy.start(checkpoint, container, self.ctx.home.bundle_path(container))
            try:
                restored = engine.restore_lazy(source, checkpoint, container, pages)
            finally:
                pages.abandon()  # nothing once the member runs; else its supervisor stops, nothing left
            running.append(pages.work)
            return restored, pages.id

        try:
            return self._restore_all(pod, name, member)
        except BaseException:
            for work in running:  # their containers are gone (the rollback): so are their records
                discard(work)
            raise

    def _restore_all(self, pod: podfmt.PodCheckpoint, name: str | None, member: RestoreMember) -> RestoredPod:
        config = pod.config
        ids = {m.name: restored_id(m.name, m.id, name) for m in config.members}
        with ExitStack() as stack:
            for member_id in sorted(ids.values()):
                stack.enter_context(container_lock("runc", self.ctx.runc_root, member_id, self.ctx.home.root))
            taken = [i for i in ids.values() if self.runc.exists(i)]
            if taken:
                raise AlreadyExists(f"runc containers named {', '.join(taken)} exist already",
                                    hint="restore the pod under another name with --name NEWPOD, or remove them")
            return self._restore(pod, ids, name or config.pod.name, member)

    def _restore(self, pod: podfmt.PodCheckpoint, ids: dict[str, str], new_pod: str,
                 restore_member: RestoreMember) -> RestoredPod:
        config = pod.config
        done: list[Restored] = []
        held: list[tuple[pod_lock.NetnsLock, Any]] = []

        def remove() -> None:
            for restored in reversed(done):
                if self.runc.exists(restored.container):
                    self.runc.delete(restored.container)
                if restored.bundle is not None:
                    shutil.rmtree(restored.bundle, ignore_errors=True)
            for lock, guard in held:  # the namespace went with the sandbox; a lock left anyway goes too
                lock.unlock(missing_ok=True)
                guard.keep()

        members: list[RestoredMember] = []
        with undone_on_failure(remove, interrupted=RESTORE_INTERRUPTED):
            sandbox_pid = 0
            pids: dict[str, int] = {}
            for name in config.restore_order:
                member = config.member(name)
                if name == config.sandbox:
                    placement = Placement(annotations={POD_NAME_KEY: new_pod})
                else:
                    # Each namespace from the member that owns it now (the sandbox, as ckpt saves
                    # pods; another member in other writers' pods), restored before it.
                    placement = Placement(joins={kind: f"/proc/{pids.get(owner, sandbox_pid)}/ns/{NS_FILES[kind]}"
                                                 for kind, owner in member.joins().items()}, locked=bool(held))
                with phase(f"restore {name}"):
                    engine = RuncEngine(self.ctx, runc=self.runc, placement=placement)
                    restored, delivery = restore_member(engine, pod.checkpoints[name], ids[name])
                done.append(restored)
                pids[name] = restored.pid
                members.append(RestoredMember(name, restored.container, restored.pid, restored.warnings, delivery))
                if name == config.sandbox and member.namespaces.get("network") == podfmt.OWN:
                    # Before any member comes back: the first one restored would talk at once to a
                    # peer not restored yet, and get a reset (runtime/pod_lock.py).
                    sandbox_pid = restored.pid
                    lock = self.host.lock_for(sandbox_pid)
                    held.append((lock, self.host.guard(runc=freeze.runc_argv(self.runc), resume=[], lock=lock)))
                    with phase("lock network"):
                        lock.lock()
                elif name == config.sandbox:
                    sandbox_pid = restored.pid
            for lock, guard in held:
                with phase("unlock network"):
                    lock.unlock()
                guard.keep()
            held.clear()
        return RestoredPod(new_pod, tuple(members))
