"""The page supervisor: the background process that owns page delivery of one lazy restore, from
before `runc restore --lazy-pages` runs until the last page is in (or the container is killed).

    python -m checkpointer.lazy.supervisor WORK_DIR READY_FD

It waits for the word "job" on stdin (WORK_DIR/job.json then says what to do: the caller may
start it early, so that its start overlaps the fetch of the criu role). It writes the pages the restore reads itself, starts CRIU's lazy-pages daemon and a guard
(guard.py), says "ready" (or "failed") on READY_FD, and waits on stdin for the caller's word: "restored PID" once
the restore has returned, "abandon" if it failed. It then serves pages until the daemon reports
every page in. When delivery cannot go on (a chunk fails its digest, the source stays unreachable
past the deadline, the daemon dies) it kills the container first, then lets go of the daemon.
Its state and progress are in WORK_DIR/status.json throughout.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..errors import CkptError
from ..oci.layout import Layout
from ..progress import Update
from .chunks import ChunkMap
from .daemon import LazyPagesDaemon
from .guard_client import GuardClient
from .images import write_eager_pages
from .job import COMPLETE, FAILED, JOB_FILE, READY, SERVING, STARTING, Job, SourceSpec, Status
from .memory import Memory, lazy_order
from .pagemap import PageIndex
from .server import DaemonGone, Outcome, PageServer
from .stop import stop_container
from .uffd import UffdHolder

log = logging.getLogger(__name__)

FAST_SCAN, SLOW_SCAN = 0.002, 0.5  # seconds between looks for new userfaultfds, before and after all came
STATUS_EVERY = 0.25
AWAIT_RESTORE = 120.0  # how long a failure waits for the caller's restore to end before it kills


def open_source(spec: SourceSpec):  # noqa: ANN201 - a ChunkSource
    from .source import LayoutSource

    if spec.kind == "layout" and spec.layout:
        return LayoutSource(Layout(Path(spec.layout)))
    if spec.kind == "registry" and spec.host and spec.repository:
        from ..registry.client import Registry
        from ..registry.transport import RetryPolicy
        from .registry_source import RegistrySource

        # One try per request: Memory retries with its own backoff, within the restore's deadline.
        registry = Registry(spec.host, insecure=spec.insecure, ca_dir=spec.ca_dir, plain_http=spec.plain_http,
                            timeout=10.0, retry=RetryPolicy(tries=1))
        cache = Layout(Path(spec.cache), create=True) if spec.cache else None
        return RegistrySource(registry, spec.repository, cache=cache)
    raise CkptError(f"lazy restore source {spec.kind!r} is not one this version knows")


class Abandoned(CkptError):
    """The caller's restore failed: there is no container to stop, only pages to stop serving."""


class Supervisor:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = Status(STARTING, os.getpid(), started=time.time())
        self.container_pid: int | None = None
        self._status_lock = threading.Lock()
        self._dirty = False
        self._served = 0
        self.server: PageServer | None = None
        self.daemon: LazyPagesDaemon | None = None
        self.guard: GuardClient | None = None
        self.uffds: UffdHolder | None = None
        self._done = threading.Event()
        self._caller_said = threading.Event()  # "restored PID" or "abandon" came
        self._abandoned = False

    # -- the run ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before the restore may run: pages files, guard, daemon."""
        job = self.job
        t0 = time.monotonic()
        self.source = open_source(job.source)
        self.index = PageIndex.load(job.images)
        self.chunk_map = ChunkMap(list(job.chunks))
        self.memory = Memory(self.source, self.chunk_map, self.index, policy=job.policy, jobs=job.jobs,
                             budget=job.budget)
        t1 = time.monotonic()
        write_eager_pages(job.images, self.index, self.chunk_map, self.memory)
        t2 = time.monotonic()
        self.memory.prefetch(lazy_order(self.chunk_map, self.index))  # starts now: the restore takes a while
        guard: list = []  # the guard (a Python) and the daemon start side by side
        starting = threading.Thread(target=lambda: guard.append(_attempt(GuardClient.start, job.stopper)))
        starting.start()
        try:
            self.daemon = LazyPagesDaemon(job.images, job.work)
        finally:
            starting.join()
            if guard and isinstance(guard[0], GuardClient):
                self.guard = guard[0]
        if not isinstance(guard[0], GuardClient):
            raise guard[0]
        t3 = time.monotonic()
        log.info("prepared in %.3f s: index %.3f s, eager pages %.3f s, guard and daemon %.3f s", t3 - t0, t1 - t0,
                 t2 - t1, t3 - t2)
        self.uffds = UffdHolder(self.daemon.pid)
        self.guard.hold([self.daemon.sock.fileno()])
        self._update(state=READY, total_bytes=self.index.lazy_bytes(), daemon_pid=self.daemon.pid,
                     guard_pid=self.guard.pid, force=True)

    def run(self) -> Outcome:
        assert self.daemon is not None
        self.server = PageServer(self.daemon.sock, self.index, self.memory, on_progress=self._progress)
        watchers = [threading.Thread(target=self._watch_uffds, name="lazy-uffds", daemon=True)]
        threading.Thread(target=self._watch_daemon, name="lazy-daemon", daemon=True).start()
        threading.Thread(target=self._write_status, name="lazy-status", daemon=True).start()
        watchers[0].start()
        self._update(state=SERVING, force=True)
        outcome = self.server.serve()
        self._done.set()
        for watcher in watchers:  # no new copies of descriptors once they are being let go
            watcher.join()
        if outcome.complete:
            self._finish_complete(outcome)
        else:
            assert outcome.error is not None
            self._finish_failed(outcome.error, outcome)
        return outcome

    def restored(self, pid: int) -> None:
        """The caller's restore returned: `pid` is the container's init."""
        self.container_pid = pid
        self._caller_said.set()
        if self.guard is not None:
            self.guard.container(pid)
        self._update(container_pid=pid, force=True)

    def abandon(self, error: CkptError) -> None:
        """The restore failed: stop serving (there is no container to stop)."""
        self._abandoned = True
        self._caller_said.set()
        if self.server is not None:
            self.server.stop(error)

    # -- endings -----------------------------------------------------------------------------------

    def _finish_complete(self, outcome: Outcome) -> None:
        # Every page is in and the daemon exits on its own: let go of the userfaultfds at once (a
        # range the process zaps later would otherwise fault into a descriptor nobody reads).
        self._let_go()
        self._update(state=COMPLETE, served_bytes=outcome.served_bytes, requests=outcome.requests,
                     finished=time.time(), force=True)

    def _finish_failed(self, error: CkptError, outcome: Outcome | None) -> None:
        if isinstance(error, DaemonGone) and self.daemon is not None:
            error = DaemonGone(str(error), log_tail=self.daemon.failure("").log_tail)
        # A failure while the restore still runs waits for it to end: a kill before the container
        # exists would miss it, and its processes would wait in page faults for ever.
        self._caller_said.wait(AWAIT_RESTORE)
        try:
            if not self._abandoned:
                stop_container(self.job.stopper, self.container_pid)
        except CkptError as exc:  # keep the descriptors (the guard too): the process must not run on
            log.error("could not stop the restored container: %s", exc)
            self._update(state=FAILED, error=_error_json(error, also=exc), finished=time.time(), force=True)
            raise
        self._let_go()
        self._update(state=FAILED, error=_error_json(error), finished=time.time(), force=True,
                     **({"served_bytes": outcome.served_bytes, "requests": outcome.requests} if outcome else {}))

    def _let_go(self) -> None:
        if self.uffds is not None:
            self.uffds.close()
        if self.guard is not None:
            self.guard.release()
        if self.daemon is not None:
            self.daemon.sock.close()
            if self.daemon.wait(10) is None:
                self.daemon.kill()
        if hasattr(self, "memory"):
            self.memory.close()
        if hasattr(self, "source"):
            self.source.close()
        if self.job.remove_images:
            shutil.rmtree(self.job.images, ignore_errors=True)

    # -- watchers ----------------------------------------------------------------------------------

    def _watch_uffds(self) -> None:
        """Copy the daemon's userfaultfds as soon as they come (the restore hands them over before
        the processes run), and again when a restored process forks."""
        assert self.uffds is not None and self.guard is not None
        tasks = len(self.index.tasks)
        while not self._done.wait(FAST_SCAN if len(self.uffds.fds) < tasks else SLOW_SCAN):
            try:
                if self.uffds.refresh():
                    self.guard.hold([self.daemon.sock.fileno(), *self.uffds.fds])
            except (OSError, CkptError) as exc:
                log.info("userfaultfd watch: %s", exc)

    def _watch_daemon(self) -> None:
        assert self.daemon is not None and self.server is not None
        code = self.daemon.wait()
        if not self._done.wait(0.5):  # a daemon that finished said so first (PS_IOV_CLOSE)
            self.server.stop(DaemonGone(f"criu lazy-pages exited ({code}) before every page was in"))

    # -- status ------------------------------------------------------------------------------------

    def _progress(self, update: Update) -> None:
        self._served = update.done  # cheap: called once per answer; the writer thread reads it
        self._dirty = True

    def _update(self, *, force: bool = False, **changes: object) -> None:
        """Change the status; it is written at once when `force`d (a change of state), else by the
        writer thread a few times a second (an fsync per served request would slow serving)."""
        with self._status_lock:
            now = time.time()
            first = self.server.first_request if self.server else None
            live = {"fetched_bytes": getattr(getattr(self, "source", None), "fetched_bytes", 0),
                    "requests": self.server.requests if self.server else 0, "served_bytes": self._served}
            self.status = replace(self.status, updated=now, **{**live, **changes})  # type: ignore[arg-type]
            if first is not None and self.status.first_request is None:
                self.status = replace(self.status, first_request=now - (time.monotonic() - first))
            if force:
                self.status.write(self.job.work)
                self._dirty = False
            else:
                self._dirty = True

    def _write_status(self) -> None:
        while not self._done.wait(STATUS_EVERY):
            if self._dirty:
                self._update(force=True)


def _attempt(fn, *args):  # noqa: ANN001, ANN002, ANN202
    """fn(*args), or the CkptError it raised (for a thread whose caller re-raises it)."""
    try:
        return fn(*args)
    except CkptError as exc:
        return exc


def _error_json(error: CkptError, *, also: CkptError | None = None) -> dict:
    out = {"type": type(error).__name__, "message": str(error), "hint": error.hint, "exitCode": error.exit_code,
           "log": getattr(error, "log_tail", "")}
    if also is not None:
        out["alsoFailed"] = str(also)
    return out


def _listen(supervisor: Supervisor) -> None:
    """The caller's word on stdin: "restored PID", or "abandon"; an end of input before either
    means the caller is gone: pages go on being served (the restore may well have worked)."""
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        if word == "restored" and arg.isdigit():
            supervisor.restored(int(arg))
        elif word == "abandon":
            supervisor.abandon(Abandoned("the restore failed; its pages are no longer served"))
            return


def main(argv: list[str]) -> int:
    import json

    work, ready = Path(argv[0]), os.fdopen(int(argv[1]), "w")
    logging.basicConfig(filename=str(work / "supervisor.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.stdin.readline().strip() != "job":
        return 1  # the caller went away (or gave up) before there was anything to do
    job = Job.from_json(json.loads((work / JOB_FILE).read_bytes()))
    supervisor = Supervisor(job)
    try:
        supervisor.prepare()
    except CkptError as exc:
        supervisor._let_go()  # nothing was restored yet: nothing to stop
        supervisor._update(state=FAILED, error=_error_json(exc), finished=time.time(), force=True)
        ready.write("failed\n")
        ready.close()
        return exc.exit_code
    ready.write("ready\n")
    ready.close()
    threading.Thread(target=_listen, args=(supervisor,), name="lazy-caller", daemon=True).start()
    outcome = supervisor.run()
    return 0 if outcome.complete else (outcome.error.exit_code if outcome.error else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
