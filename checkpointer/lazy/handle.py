"""The caller's side of a lazy restore's page delivery: start the supervisor (supervisor.py), run
the restore once it is ready, tell it how that went, and read its state later on.

    delivery = Delivery.start(job)              # pages files written, daemon listening
      (or: delivery = Delivery.launch(work) early, to have the Python start meanwhile, or
       Delivery.fork(work) before any thread runs, and delivery.begin(job) once the criu role
       is unpacked into job.images)
    runc restore --lazy-pages --image-path job.images --work-path job.work ...
    delivery.restored(init_pid)                 # or delivery.abandon() if the restore failed
    status = delivery.wait()                    # optional: the supervisor carries on without us
    delivery.close()                            # the caller lets go

The supervisor runs in a session of its own and outlives the caller; `Status.read(work)` gives
its state from any process. A failure comes back as the ckpt error that caused it (same class
and exit code) where the class is known."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .. import errors
from ..errors import CkptError
from .forked import ForkedProcess, fork_supervisor
from .job import Job
from .status import Status

START_TIMEOUT = 120.0  # the eager pages may have to come from a registry first


class Delivery:
    def __init__(self, work: Path, process: subprocess.Popen[str] | ForkedProcess, ready: int) -> None:
        self.work, self.process, self._ready = work, process, ready
        self.job: Job | None = None

    @classmethod
    def launch(cls, work: Path) -> Delivery:
        """Start the supervisor for the restore whose work directory is `work`; it waits for its job."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "checkpointer.lazy.supervisor", str(work), str(ready_w)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(ready_w,),
                start_new_session=True, text=True)
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        return cls(work, process, ready_r)

    @classmethod
    def fork(cls, work: Path) -> Delivery:
        """As launch, but the supervisor is a fork of this process (a few milliseconds instead of
        an interpreter's start). Only before this process starts any thread."""
        from .supervisor import main

        process, ready = fork_supervisor(work, main)
        return cls(work, process, ready)

    def begin(self, job: Job, *, timeout: float = START_TIMEOUT) -> None:
        """Hand the supervisor its job; returns once the restore may run (its pages files are
        written, the daemon listens), or raises why it cannot."""
        self.submit(job)
        self.ready(timeout=timeout)

    def submit(self, job: Job) -> None:
        """Hand the supervisor its job and return at once: it writes the pages files and starts the
        daemon while the caller does other work (the root filesystem); ready() waits for that."""
        if job.work != self.work:
            raise ValueError(f"the job's work directory {job.work} is not {self.work}")
        self.job = job
        job.write()
        self._say("job")

    def ready(self, *, timeout: float = START_TIMEOUT) -> None:
        """Until the restore may run; raises why it cannot."""
        assert self.job is not None, "submit the job first"
        try:
            word = _read_word(self._ready, timeout)
        finally:
            self._close_ready()
        if word != "ready":
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
            raise self.error() or CkptError("the lazy restore's page supervisor did not start",
                                            hint=f"see {self.job.work / 'supervisor.log'}")

    def _close_ready(self) -> None:
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1

    @classmethod
    def start(cls, job: Job, *, timeout: float = START_TIMEOUT) -> Delivery:
        delivery = cls.launch(job.work)
        delivery.begin(job, timeout=timeout)
        return delivery

    @property
    def pid(self) -> int:
        return self.process.pid

    def restored(self, init_pid: int) -> None:
        self._say(f"restored {init_pid}")

    def abandon(self) -> None:
        """The restore failed (or never ran): pages stop. Before a job, the supervisor just exits."""
        self._say("abandon")
        self._close_ready()

    def close(self) -> None:
        """Let go of the pipes to the supervisor (it carries on; a supervisor still waiting for its
        job takes that as the caller gone, and exits)."""
        self._close_ready()
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass

    def status(self) -> Status:
        return Status.read(self.work)

    def wait(self, timeout: float | None = None) -> Status:
        """Wait until every page is in or delivery failed; returns the final status."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.status()

    def error(self) -> CkptError | None:
        """The error delivery failed with, as a ckpt error, or None."""
        try:
            status = self.status()
        except (OSError, CkptError):
            return None
        return error_of(status)

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # gone: its status says why


def error_of(status: Status) -> CkptError | None:
    if not status.error:
        return None
    from .server import DaemonGone

    classes: dict[str, type[CkptError]] = {name: getattr(errors, name) for name in errors.EXIT_CODES}
    classes["DaemonGone"] = DaemonGone
    cls = classes.get(status.error.get("type", ""), CkptError)
    message, hint = status.error.get("message", "lazy restore failed"), status.error.get("hint")
    if issubclass(cls, errors.CriuFailed):
        return cls(message, hint=hint, log_tail=status.error.get("log", ""))
    try:
        return cls(message, hint=hint)
    except TypeError:
        return CkptError(message, hint=hint)


def _read_word(fd: int, timeout: float) -> str:
    deadline, data = time.monotonic() + timeout, b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            return ""
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()

