"""What a page supervisor reports while it works: status.json in the restore's private work
directory, replaced atomically, so that another process (`ckpt`) can show the state and progress
of a lazy restore after the command that started it has returned."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CkptError, CorruptData
from .job import write_json

STATUS_FILE = "status.json"

# Status.state: complete (every page is in), failed (the container was killed: see error) and
# exited (the container ended on its own before every page was in) are final.
STARTING, READY, SERVING = "starting", "ready", "serving"
COMPLETE, FAILED, EXITED = "complete", "failed", "exited"
FINAL = (COMPLETE, FAILED, EXITED)


@dataclass(frozen=True, slots=True)
class Status:
    state: str
    supervisor_pid: int
    total_bytes: int = 0  # lazy bytes: what the daemon will ask for
    served_bytes: int = 0
    fetched_bytes: int = 0  # compressed bytes the source handed over
    requests: int = 0
    daemon_pid: int | None = None
    guard_pid: int | None = None
    container_pid: int | None = None
    started: float = 0.0  # wall-clock times (time.time())
    updated: float = 0.0
    first_request: float | None = None
    restore_finished: float | None = None  # the restore said so: its processes run from here on
    finished: float | None = None
    error: dict[str, Any] | None = field(default=None)  # {"type", "message", "hint", "exitCode", "log"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Status:
        try:
            return cls(**obj)
        except TypeError as exc:
            raise CorruptData(f"lazy restore status is malformed: {exc}") from None

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @classmethod
    def read(cls, work: Path) -> Status:
        return cls.from_json(json.loads((work / STATUS_FILE).read_bytes()))

    def write(self, work: Path) -> None:
        write_json(work / STATUS_FILE, self.to_json())


class StatusBoard:
    """The supervisor's status: changes of state are written at once; progress (counted once per
    answer, from `live()`) a few times a second by a thread of its own, not once per request."""

    def __init__(self, work: Path, status: Status, live: Callable[[], dict[str, Any]],
                 every: float = 0.25) -> None:
        self.work, self.status, self._live, self._every = work, status, live, every
        self._lock = threading.Lock()
        self._dirty = False
        self._stopped = threading.Event()

    def update(self, *, write: bool = True, **changes: Any) -> Status:
        with self._lock:
            self.status = replace(self.status, updated=time.time(), **{**self._live(), **changes})
            if write:
                self.status.write(self.work)
            self._dirty = not write
            return self.status

    def touch(self) -> None:
        """Progress was made: write it with the next round."""
        self._dirty = True

    def start(self) -> None:
        threading.Thread(target=self._run, name="lazy-status", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            if self._dirty:
                self.update()


def error_json(error: CkptError, *, also: CkptError | None = None) -> dict[str, Any]:
    """An error as status.json carries it (with its exit code, and CRIU's log lines if any)."""
    out = {"type": type(error).__name__, "message": str(error), "hint": error.hint, "exitCode": error.exit_code,
           "log": getattr(error, "log_tail", "")}
    if also is not None:
        out["alsoFailed"] = str(also)
    return out
