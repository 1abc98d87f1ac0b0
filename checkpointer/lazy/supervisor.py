"""The page supervisor: the background process that owns page delivery of one lazy restore, from
before `runc restore --lazy-pages` runs until the last page is in (or the container is killed).

    python -m checkpointer.lazy.supervisor WORK_DIR READY_FD

It starts a guard (guard.py) at once, then waits for the word "job" on stdin (WORK_DIR/job.json
then says what to do: the caller may start it early, so that its start overlaps the fetch of the
criu role). It writes the pages the restore reads itself, starts CRIU's lazy-pages daemon in
WORK_DIR/daemon and a relay on WORK_DIR/lazy-pages.socket (relay.py: it learns each restored
process and keeps a copy of its userfaultfd), says "ready" (or "failed") on READY_FD, and serves
pages until the daemon reports every page in. Later words on stdin: "restored PID" (the restore
returned), "abandon" (it failed). When delivery cannot go on (a chunk fails its digest, the source
stays unreachable past the deadline, the daemon dies) it kills every restored process, waits
until they are gone, and only then lets go of the daemon: at any point, during the restore too.
Its state and progress are in WORK_DIR/status.json throughout.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import resource
import select
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ..criu.options import log_tail
from ..errors import CkptError, CriuFailed, as_ckpt_error
from ..progress import Update
from .chunks import ChunkMap
from .daemon import LazyPagesDaemon
from .guard_client import GuardClient
from .images import write_eager_pages
from .job import JOB_FILE, Job
from .memory import Memory, lazy_order
from .pagemap import PageIndex
from .relay import Relay, Task
from .server import DaemonGone, Outcome, PageServer
from .source import open_source
from .status import COMPLETE, EXITED, FAILED, READY, SERVING, STARTING, Status, StatusBoard, error_json
from .stop import stop_container
from .uffd import UffdHolder

log = logging.getLogger(__name__)

FORK_SCAN = 0.5  # seconds between looks for userfaultfds of processes forked while pages still come
RESTORE_WAIT = 600.0  # a restore that has not begun this long after "ready" is not coming
CALLER_GRACE = 10.0  # a restore its caller started just before it died reaches the relay within this


class Abandoned(CkptError):
    """The caller's restore failed (or a step after it): pages stop, and whatever the restore made
    is killed first, as for any failure (a failed restore killed its processes itself already)."""


class ContainerExited(CkptError):
    """The restored container ended on its own before every page was in: nothing to stop."""


class Supervisor:
    def __init__(self, job: Job, guard: GuardClient | None = None) -> None:
        self.job = job
        self.board = StatusBoard(job.work, Status(STARTING, os.getpid(), started=time.time()), self._live)
        self.guard = guard
        self.server: PageServer | None = None
        self.daemon: LazyPagesDaemon | None = None
        self.relay: Relay | None = None
        self.forks: UffdHolder | None = None
        self._done = threading.Event()
        self._served = 0
        self._stop_lock = threading.Lock()
        self._pending_stop: CkptError | None = None  # a stop asked for before the server existed

    # -- the run ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before the restore may run: pages files, guard, daemon, relay."""
        job, t0 = self.job, time.monotonic()
        daemon_work = job.work / "daemon"
        daemon_work.mkdir(mode=0o700)
        self.daemon = LazyPagesDaemon(job.images, daemon_work)  # starts while the pages files are made
        if self.guard is not None:  # from now on a dead supervisor's daemon is killed, not left waiting
            self.guard.hold([], daemon=self.daemon.pid)
        self.source = open_source(job.source)
        self.index = PageIndex.load(job.images)
        self.chunk_map = ChunkMap(list(job.chunks))
        pin = getattr(self.source, "pin", None)
        if pin is not None:  # a local store: its gc must not take chunks still to come
            pin(job.chunks)
        self.memory = Memory(self.source, self.chunk_map, self.index, policy=job.policy, jobs=job.jobs,
                             budget=job.budget)
        write_eager_pages(job.images, self.index, self.chunk_map, self.memory)
        t1 = time.monotonic()
        self.memory.prefetch(lazy_order(self.chunk_map, self.index))  # starts now: the restore takes a while
        if self.guard is None:
            self.guard = GuardClient.start()
        self.guard.set_stopper(job.stopper)
        self.daemon.wait_ready()
        self.guard.hold([self.daemon.sock.fileno()], daemon=self.daemon.pid)
        self.relay = Relay(job.work, daemon_work, on_task=self._task_came, on_finished=self._restore_finished,
                           on_error=self._relay_failed)
        self.forks = UffdHolder(self.daemon.pid)
        log.info("ready in %.3f s (eager pages %.3f s)", time.monotonic() - t0, t1 - t0)
        self.board.update(state=READY, total_bytes=self.index.lazy_bytes(), daemon_pid=self.daemon.pid,
                     guard_pid=self.guard.pid)

    def run(self) -> Outcome:
        assert self.daemon is not None
        with self._stop_lock:
            self.server = PageServer(self.daemon.sock, self.index, self.memory, on_progress=self._progress)
            if self._pending_stop is not None:
                self.server.stop(self._pending_stop)
        forks = threading.Thread(target=self._watch_forks, name="lazy-forks", daemon=True)
        threading.Thread(target=self._watch_daemon, name="lazy-daemon", daemon=True).start()
        self.board.start()
        threading.Thread(target=self._await_restore, name="lazy-restore", daemon=True).start()
        forks.start()
        self.board.update(state=SERVING)
        outcome = self.server.serve()
        self._done.set()
        self.board.stop()
        forks.join()  # no new copies of descriptors once they are being let go
        if outcome.complete and self._all_exited():  # the daemon is done because nobody is left
            outcome = replace(outcome, complete=False,
                              error=ContainerExited("the container exited before every page was in"))
        if outcome.complete:
            # Every page is in and the daemon exits on its own. Let go of the userfaultfds at once: a
            # range the process zaps later would fault into a descriptor nobody reads.
            self._let_go()
            self.board.update(state=COMPLETE, served_bytes=outcome.served_bytes, finished=time.time())
        elif isinstance(outcome.error, ContainerExited):
            self._let_go()
            self.board.update(state=EXITED, error=error_json(outcome.error), finished=time.time())
        else:
            assert outcome.error is not None
            self._fail(outcome.error)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        log.info("%d requests, %d bytes served; CPU: supervisor %.2f s, daemon and guard %.2f s", outcome.requests,
                 outcome.served_bytes, own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime)
        return outcome

    def _all_exited(self) -> bool:
        pidfds = [t.pidfd for t in self.relay.tasks if t.pidfd >= 0] if self.relay else []
        return bool(pidfds) and len(select.select(pidfds, [], [], 0)[0]) == len(pidfds)

    def restored(self, pid: int) -> None:
        """The caller's restore returned: `pid` is the container's init."""
        self.board.update(container_pid=pid)
        threading.Thread(target=self._watch_container, args=(pid,), name="lazy-container", daemon=True).start()

    def abandon(self) -> None:
        self._stop(Abandoned("the restore failed; its pages are no longer served"))

    def _stop(self, error: CkptError) -> None:
        """End serving with `error` (from any thread, also before serving began)."""
        with self._stop_lock:
            if self.server is not None:
                self.server.stop(error)
            elif self._pending_stop is None:
                self._pending_stop = error

    # -- endings -----------------------------------------------------------------------------------

    def _fail(self, error: CkptError) -> None:
        """Kill every restored process, wait until they are gone, then let go of the daemon."""
        if isinstance(error, DaemonGone) and self.daemon is not None:
            error = DaemonGone(str(error), log_tail=self.daemon.failure("").log_tail)
        tasks = list(self.relay.tasks) if self.relay else []
        try:
            stop_container(self.job.stopper, [t.pidfd for t in tasks if t.pidfd >= 0],
                           run_kill=self.relay is not None and self.relay.finished)
        except CkptError as exc:  # keep every descriptor (the guard too): the processes must not run on
            log.error("could not stop the restored container: %s", exc)
            self.board.update(state=FAILED, error=error_json(error, also=exc), finished=time.time())
            raise
        self._let_go()
        self.board.update(state=FAILED, error=error_json(error), finished=time.time())

    def _let_go(self) -> None:
        """Release everything, each step whatever became of the one before (a daemon left behind
        waits for ever)."""
        steps: list[Callable[[], object]] = []
        if self.relay is not None:
            steps.append(self.relay.close)
        if self.forks is not None:
            steps.append(self.forks.close)
        if self.guard is not None:
            steps.append(self.guard.release)
        if self.daemon is not None:
            steps.append(self._end_daemon)
        for part in (getattr(self, "memory", None), getattr(self, "source", None)):
            close = getattr(part, "close", None)
            if close is not None:
                steps.append(close)
        if self.job.remove_images:
            steps.append(lambda: shutil.rmtree(self.job.images, ignore_errors=True))
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("while letting go")

    def _end_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.sock.close()
        # A daemon that had a restore exits once its page server is gone; one still waiting for a
        # restore (in accept) never would.
        had_restore = self.relay is not None and self.relay.connected.is_set()
        if not had_restore or self.daemon.wait(10) is None:
            self.daemon.kill()

    # -- what the relay and the watchers see -------------------------------------------------------

    def _task_came(self, task: Task) -> None:
        assert self.guard is not None and self.daemon is not None and self.relay is not None
        tasks = self.relay.tasks
        self.guard.hold([self.daemon.sock.fileno(), *(t.uffd for t in tasks)], pids=[t.pid for t in tasks])
        if task.vpid == 1 or self.board.status.container_pid is None:
            self.board.update(container_pid=task.pid)

    def _relay_failed(self, error: CkptError) -> None:
        if isinstance(error, CriuFailed) and not error.log_tail:
            error = CriuFailed(str(error), log_tail=log_tail(self.job.work / "restore.log"),
                               hint="the CRIU log lines above say why")
        self._stop(error)

    def _restore_finished(self) -> None:
        self.board.update(restore_finished=time.time())

    def _watch_forks(self) -> None:
        """Processes forked while pages still come get their userfaultfds from the kernel, in the
        daemon: copy those too (the guard gets them with the relay's)."""
        assert self.forks is not None and self.guard is not None and self.daemon is not None
        while not self._done.wait(FORK_SCAN):
            if self.relay is None or not self.relay.finished:
                continue
            try:
                if self.forks.refresh():
                    held = [t.uffd for t in self.relay.tasks] + self.forks.fds
                    self.guard.hold([self.daemon.sock.fileno(), *held], pids=[t.pid for t in self.relay.tasks])
            except (OSError, CkptError) as exc:
                log.info("userfaultfd watch: %s", exc)

    def caller_gone(self) -> None:
        """The caller went away (killed, say). A restore it had started goes on without it; if none
        has reached the relay within CALLER_GRACE, none will: stop."""
        assert self.relay is not None
        if not self.relay.connected.wait(CALLER_GRACE) and not self._done.is_set():
            self._stop(Abandoned("ckpt went away before the restore began; its pages are no longer served"))

    def _await_restore(self) -> None:
        """A caller that died before it ran the restore leaves a daemon waiting for one for ever."""
        assert self.relay is not None
        if not self.relay.connected.wait(RESTORE_WAIT) and not self._done.is_set():
            self._stop(Abandoned(f"no restore came within {RESTORE_WAIT:g} s of the pages being ready"))

    def _watch_container(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None  # gone already
        try:
            while pidfd is not None and not select.select([pidfd], [], [], FORK_SCAN)[0]:
                if self._done.is_set():
                    return
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if not self._done.is_set():
            self._stop(ContainerExited(f"the container (init {pid}) exited before every page was in"))

    def _watch_daemon(self) -> None:
        assert self.daemon is not None
        code = self.daemon.wait()
        if not self._done.wait(0.5):  # a daemon that finished said so first (PS_IOV_CLOSE)
            self._stop(DaemonGone(f"criu lazy-pages exited ({code}) before every page was in"))

    # -- status ------------------------------------------------------------------------------------

    def _progress(self, update: Update) -> None:
        self._served = update.done  # cheap: called once per answer
        self.board.touch()

    def _live(self) -> dict[str, Any]:
        """The counters that change with every answer, read when the status is written."""
        server = self.server
        first = None
        if server is not None and server.first_request is not None:
            first = time.time() - (time.monotonic() - server.first_request)
        out = {"fetched_bytes": getattr(getattr(self, "source", None), "fetched_bytes", 0),
               "requests": server.requests if server else 0, "served_bytes": self._served}
        if first is not None and self.board.status.first_request is None:
            out["first_request"] = first
        return out


def _listen(supervisor: Supervisor) -> None:
    """The caller's word on stdin. An end of input means the caller is gone: pages go on being
    served (the restore may well have worked), and a failure is handled without it."""
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        if word == "restored" and arg.isdigit():
            supervisor.restored(int(arg))
        elif word == "abandon":
            supervisor.abandon()
            return
    supervisor.caller_gone()


LOCK_FILE = "supervisor.lock"


def hold_lock(work: Path) -> int:
    """Lock WORK_DIR/supervisor.lock for as long as this process lives: whoever finds it locked
    knows a supervisor still owns the restore (`is_alive`)."""
    fd = os.open(work / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd  # never closed: the lock goes with the process


def is_alive(work: Path) -> bool:
    """Whether a supervisor still owns the restore whose work directory is `work`."""
    try:
        fd = os.open(work / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _say(ready: TextIO, word: str) -> None:
    """Tell the caller, if it is still there (a caller that was killed reads nothing: its restore
    may still come, and caller_gone() handles the rest)."""
    try:
        ready.write(word + "\n")
        ready.close()
    except BrokenPipeError:
        log.info("the caller went away before it heard %r", word)


def main(argv: list[str]) -> int:
    work, ready = Path(argv[0]), os.fdopen(int(argv[1]), "w")
    logging.basicConfig(filename=str(work / "supervisor.log"), level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.excepthook = lambda args: log.error("thread %s failed", args.thread.name if args.thread else "?",
                                                  exc_info=args.exc_value)
    hold_lock(work)
    guard = GuardClient.start(fork=True)  # no thread runs yet: a fork is safe, and quick
    if sys.stdin.readline().strip() != "job":
        guard.release()
        return 1  # the caller went away (or gave up) before there was anything to do
    supervisor = Supervisor(Job.from_json(json.loads((work / JOB_FILE).read_bytes())), guard)
    try:
        supervisor.prepare()
    except Exception as exc:  # a full disk writing the pages files too: said, and nothing left behind
        if not isinstance(exc, CkptError):
            log.exception("the lazy restore could not be prepared")
        exc = as_ckpt_error("the lazy restore could not be prepared", exc)
        supervisor._let_go()  # nothing was restored yet: nothing to stop
        supervisor.board.update(state=FAILED, error=error_json(exc), finished=time.time())
        _say(ready, "failed")
        return exc.exit_code
    _say(ready, "ready")
    threading.Thread(target=_listen, args=(supervisor,), name="lazy-caller", daemon=True).start()
    try:
        outcome = supervisor.run()
    except BaseException:
        log.exception("page delivery failed unexpectedly")  # a bug: the guard takes over
        raise
    if outcome.complete or isinstance(outcome.error, ContainerExited):
        return 0
    return outcome.error.exit_code if outcome.error else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
