"""The caller's side of a lazy restore's page delivery: start the supervisor (supervisor.py), run
the restore once it is ready, tell it how that went, and read its state later on.

    delivery = Delivery.start(job)              # pages files written, daemon listening
    runc restore --lazy-pages --image-path job.images --work-path job.work ...
    delivery.restored(init_pid)                 # or delivery.abandon() if the restore failed
    status = delivery.wait()                    # optional: the supervisor carries on without us

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
from .job import Job, Status

START_TIMEOUT = 120.0  # the eager pages may have to come from a registry first


class Delivery:
    def __init__(self, job: Job, process: subprocess.Popen) -> None:
        self.job, self.process = job, process

    @classmethod
    def start(cls, job: Job, *, timeout: float = START_TIMEOUT) -> "Delivery":
        job.write()
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "checkpointer.lazy.supervisor", str(job.work), str(ready_w)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(ready_w,),
                start_new_session=True, text=True)
        finally:
            os.close(ready_w)
        try:
            word = _read_word(ready_r, timeout)
        finally:
            os.close(ready_r)
        delivery = cls(job, process)
        if word != "ready":
            process.wait(timeout)
            raise delivery.error() or CkptError("the lazy restore's page supervisor did not start",
                                                hint=f"see {job.work / 'supervisor.log'}")
        return delivery

    @property
    def pid(self) -> int:
        return self.process.pid

    def restored(self, init_pid: int) -> None:
        self._say(f"restored {init_pid}")

    def abandon(self) -> None:
        self._say("abandon")

    def status(self) -> Status:
        return Status.read(self.job.work)

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

    classes = {name: getattr(errors, name) for name in errors.EXIT_CODES} | {"DaemonGone": DaemonGone}
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


def job_status(work: Path) -> Status:
    return Status.read(work)
