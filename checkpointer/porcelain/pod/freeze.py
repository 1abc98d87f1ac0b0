"""A pod held still for its dumps: every member frozen through runc before the first dump, the
pod's network locked (runtime/pod_lock.py), and a guard process that puts it all back if ckpt dies
(runtime/pod_guard.py). The runc pods and Podman's (whose containers runc runs) share it.

    pause every member -> lock the network -> dump each (CRIU leaves it frozen) -> ... stored ->
    commit: kill every member under the lock, the sandbox last (or unlock and resume, --leave-running)

A failure or Ctrl-C anywhere before the commit unlocks and resumes every member that was running;
nothing is stopped before the whole pod checkpoint is stored.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import Interrupted, RuntimeFailed
from ...progress import OnProgress, Update
from ...runtime import pod_lock
from ...runtime.pod_guard import PodGuard
from ...runtime.runc import Runc
from ...timing import phase
from ..engines.base import Dumped
from ..rollback import SAVE_INTERRUPTED, undone_on_failure
from .model import Member, Pod

DumpOne = Callable[[Member, Path], Dumped]  # dump one member into the (empty) directory given


@dataclass(frozen=True, slots=True)
class Host:
    """What a pod engine does to the host besides running its runtime: lock a network namespace
    (by a process in it), and start a guard process. The porcelain's tests, which run without
    root, stand in for both."""

    lock_for: Callable[[int], pod_lock.NetnsLock] = pod_lock.for_pid
    guard: Callable[..., PodGuard] = PodGuard


HOST = Host()


def runc_argv(runc: Runc) -> list[str]:
    """How the guard runs this runc (its binary and root)."""
    return [runc.binary, *(["--root", str(runc.root)] if runc.root else [])]


@dataclass(eq=False)
class FrozenPod:
    pod: Pod
    work: Path
    dump_one: DumpOne
    on_commit: Callable[[], None]
    on_progress: OnProgress
    dumped: list[str] = field(default_factory=list)
    committed: bool = False

    def dump(self, member: Member) -> Dumped:
        into = self.work / member.name
        into.mkdir()
        total = len(self.pod.members)
        self.on_progress(Update("checkpoint", len(self.dumped), total, member.name))
        with phase(f"dump {member.name}"):
            dumped = self.dump_one(member, into)
        self.dumped.append(member.name)
        self.on_progress(Update("checkpoint", len(self.dumped), total, member.name))
        return dumped

    def commit(self) -> None:
        self.committed = True
        self.on_commit()


@contextmanager
def frozen(runc: Runc, pod: Pod, work: Path, *, leave_running: bool, dump_one: DumpOne,
           stop: Callable[[Member], None], on_progress: OnProgress, lock: pod_lock.NetnsLock | None,
           stopped: Callable[[], None] = lambda: None, host: Host = HOST) -> Iterator[FrozenPod]:
    """Freeze `pod` (its members' runc ids under `runc`), lock its network with `lock` and yield;
    `stop(member)` ends one member at the commit, `stopped()` is called once they all are. Members
    paused before this started stay paused whatever happens; the others are resumed on any way out
    but a commit without --leave-running."""
    statuses = {m.runc_id: runc.state(m.runc_id).status for m in pod.members}
    running = [m.runc_id for m in pod.members if statuses[m.runc_id] == "running"]
    guard = host.guard(runc=runc_argv(runc), resume=running, marker=str(work), lock=lock)

    def put_back() -> None:
        guard.fire()  # it unlocks and resumes, and is done when this returns

    def commit() -> None:
        if leave_running:
            put_back()
            return
        guard.keep()  # the pod checkpoint is stored: from here on every member is stopped
        failed: list[str] = []
        interrupted = False

        def stop_one(member: Member) -> None:
            nonlocal interrupted
            try:
                stop(member)
            except KeyboardInterrupt:  # stopping is quick, and half a stopped pod helps nobody
                interrupted = True
                stop_one(member)
            except Exception as exc:  # the others are stopped all the same
                failed.append(f"{member.name} ({member.runc_id}): {exc}")

        with phase("stop"):
            others = [m for m in pod.dump_order() if m.name != pod.sandbox]
            for member in others:
                stop_one(member)
            if lock is not None:  # while the sandbox holds the namespace: members not saved run on in it
                lock.unlock(missing_ok=True)
            for member in pod.dump_order():
                if member.name == pod.sandbox:  # last: the namespaces go with it
                    stop_one(member)
            if not failed:
                stopped()
        if failed:
            raise RuntimeFailed("the pod checkpoint is stored, but not every member could be stopped: "
                                + "; ".join(failed),
                                hint="each is still paused where it ran: remove it (`runc delete --force ID`) "
                                     "before the checkpoint is restored anywhere")
        if interrupted:
            raise Interrupted("interrupted after the pod checkpoint was stored; every member was stopped")

    state = FrozenPod(pod, work, dump_one, commit, on_progress)
    with undone_on_failure(put_back, interrupted=SAVE_INTERRUPTED):
        with phase("pause"):
            for container in running:
                runc.pause(container)
        if lock is not None:
            with phase("lock network"):
                lock.lock()
        yield state
        if not state.committed:
            put_back()  # the pipeline left without committing: nothing was stored
