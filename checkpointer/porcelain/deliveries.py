"""Lazy restores' page delivery, as ckpt starts it and shows it.

A lazy restore runs its container before the memory has arrived; the rest of the memory comes from
a page supervisor (lazy/supervisor.py), a background process in a session of its own that owns the
delivery from before `runc restore --lazy-pages` until the last page is in, and outlives the
`ckpt restore` that started it. Each lazy restore has a directory $CKPT_HOME/lazy/<id> (0700): the
supervisor's work directory (job.json, status.json, supervisor.log, CRIU's logs and
lazy-pages.socket, images/ until every page is in) and restore.json, what was restored. The
supervisor holds supervisor.lock there while it lives.

`ckpt status` lists these (list_deliveries), `--wait` follows them to the end (wait_for), and
`ckpt fsck --repair` removes the directories of supervisors that are gone (remove_finished)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import CkptError, CorruptData
from ..lazy.handle import Delivery, error_of
from ..lazy.job import Job, SourceSpec
from ..lazy.memory import DELIVERY_RETRY
from ..lazy.status import EXITED, FINAL, Status
from ..lazy.stop import Stopper
from ..lazy.supervisor import is_alive
from ..oci.model import Descriptor
from ..progress import OnProgress, Update, noop
from .home import Home

LAZY_DIR = "lazy"
RECORD_FILE = "restore.json"
LOST, GONE = "lost", "gone"  # the supervisor died with pages still to come / before it had a job
POLL = 0.1
# A restore's directory is made before its supervisor starts and takes supervisor.lock (an
# interpreter's start, on a loaded machine a second or more): until this long after its last change
# a directory without a supervisor or a status is taken to be starting, not gone.
START_GRACE = 15.0


class SupervisorLost(CkptError):
    """The page supervisor died before every page was in: its guard killed the container."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Record:
    """What a lazy restore restored (restore.json)."""

    container: str
    engine: str
    reference: str
    digest: str
    bundle: str | None = None
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> Record:
        try:
            return cls(**obj)
        except TypeError as exc:
            raise CorruptData(f"lazy restore record is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One lazy restore's delivery, as read at one moment."""

    id: str
    work: Path
    record: Record | None
    status: Status | None
    alive: bool  # its supervisor still runs
    young: bool = False  # made moments ago: its supervisor may not have taken its lock yet

    @property
    def container(self) -> str:
        return self.record.container if self.record else ""

    @property
    def state(self) -> str:
        if self.status is None:
            return "starting" if self.alive or self.young else GONE
        if self.status.final or self.alive:
            return self.status.state
        return LOST

    @property
    def final(self) -> bool:
        return self.state in (*FINAL, LOST, GONE)

    @property
    def started(self) -> float:
        if self.record is not None and self.record.started:
            return self.record.started
        return self.status.started if self.status else 0.0

    def error(self) -> CkptError | None:
        """Why delivery failed, as the ckpt error (class and exit code) it failed with."""
        if self.state == EXITED:
            return None  # the container ended on its own: nothing failed (status.json says when)
        if self.state == LOST:
            return SupervisorLost("the page supervisor died before every page was in; its guard killed the "
                                  "container", hint=f"see {self.work / 'supervisor.log'}")
        return error_of(self.status) if self.status is not None else None

    def to_json(self) -> dict[str, Any]:
        status = self.status.to_json() if self.status else {}
        error = self.error()
        return {
            "id": self.id, "container": self.container, "state": self.state, "alive": self.alive,
            "reference": self.record.reference if self.record else None,
            "digest": self.record.digest if self.record else None,
            "engine": self.record.engine if self.record else None,
            "totalBytes": status.get("total_bytes", 0), "servedBytes": status.get("served_bytes", 0),
            "fetchedBytes": status.get("fetched_bytes", 0), "requests": status.get("requests", 0),
            "started": self.started or None, "finished": status.get("finished"),
            "containerPid": status.get("container_pid"), "supervisorPid": status.get("supervisor_pid"),
            "error": None if error is None else {"type": type(error).__name__, "message": str(error),
                                                  "hint": error.hint, "exitCode": error.exit_code},
            "workDir": str(self.work),
        }


def read_delivery(work: Path) -> DeliveryView:
    record = status = None
    try:
        record = Record.from_json(json.loads((work / RECORD_FILE).read_bytes()))
    except (OSError, ValueError, CorruptData):
        pass
    try:
        status = Status.read(work)
    except (OSError, ValueError, CorruptData):
        pass
    try:
        young = time.time() - work.stat().st_mtime < START_GRACE
    except OSError:
        young = False
    return DeliveryView(work.name, work, record, status, is_alive(work), young)


def list_deliveries(home: Home, container: str | None = None) -> list[DeliveryView]:
    """Every lazy restore this home knows of (of `container` only, if given), oldest first."""
    try:
        dirs = [d for d in (home.root / LAZY_DIR).iterdir() if d.is_dir() and not d.is_symlink()]
    except FileNotFoundError:
        return []
    views = [read_delivery(d) for d in dirs]
    if container is not None:
        views = [v for v in views if v.container == container]
    return sorted(views, key=lambda v: (v.started, v.id))


def wait_for(views: Sequence[DeliveryView], *, on_progress: OnProgress = noop, timeout: float | None = None,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
             ) -> list[DeliveryView]:
    """Follow `views` until each has ended (every page in, or failed); returns them as they ended
    (or as they are when `timeout` passed). `on_progress` hears of the bytes delivered."""
    deadline = None if timeout is None else clock() + timeout
    current = list(views)
    while True:
        current = [v if v.final else read_delivery(v.work) for v in current]
        for view in current:
            if view.status is not None and view.status.total_bytes:
                on_progress(Update(f"pages {view.container}"[:24], view.status.served_bytes, view.status.total_bytes))
        if all(v.final for v in current) or (deadline is not None and clock() >= deadline):
            return current
        sleep(POLL)


def remove_finished(home: Home) -> list[Path]:
    """Remove the directories of lazy restores whose supervisor is gone; returns them."""
    removed = []
    for view in list_deliveries(home):
        if not view.alive and not (view.young and view.status is None):
            shutil.rmtree(view.work, ignore_errors=True)
            removed.append(view.work)
    return removed


def discard(work: Path, *, timeout: float = 15.0) -> None:
    """Remove the record of a lazy restore that was undone (its container removed by the caller)
    once its supervisor, which notices, has ended."""
    deadline = time.monotonic() + timeout
    while is_alive(work) and time.monotonic() < deadline:
        time.sleep(POLL)
    remove_record(work)


def remove_record(work: Path, *, tries: int = 20) -> None:
    """Remove a lazy restore's directory, again if something still ending (CRIU's, the guard's
    last writes) put a file there meanwhile: a directory left half-removed reads as a restore
    that is starting."""
    for _ in range(tries):
        shutil.rmtree(work, ignore_errors=True)
        if not work.exists():
            return
        time.sleep(0.05)


class LazyPages:
    """A page supervisor started for a lazy restore that is about to run. It is forked from this
    process when no other thread runs yet (a few milliseconds), else started as a new interpreter;
    it waits for its job meanwhile. The engine hands it the job (submit), waits until the restore
    may run (ready), runs `runc restore --lazy-pages --image-path images --work-path work`, and says
    how that went (restored, or abandon)."""

    def __init__(self, home: Home, *, deadline: float | None = None) -> None:
        """`deadline`: the longest a page may wait for the source (the registry) before the
        container is killed (default: lazy/memory.py's, 30 s)."""
        self.policy = DELIVERY_RETRY if deadline is None else replace(DELIVERY_RETRY, deadline=deadline)
        parent = home.ensure_root() / LAZY_DIR
        parent.mkdir(mode=0o700, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="r", dir=parent))
        self.images = self.work / "images"
        self.images.mkdir()
        try:
            self.delivery = Delivery.fork(self.work) if threading.active_count() == 1 else Delivery.launch(self.work)
        except BaseException:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.source: SourceSpec | None = None
        self._ended = False

    @property
    def id(self) -> str:
        return self.work.name

    def describe(self, record: Record) -> None:
        atomic.write_bytes(self.work / RECORD_FILE, json.dumps(record.to_json()).encode())

    def submit(self, chunks: Sequence[Descriptor], stopper: Stopper) -> None:
        """Hand the supervisor its job: the criu role is in `images`; it writes the pages files and
        starts the daemon while the caller unpacks the root filesystem."""
        assert self.source is not None, "the source of the pages is set first"
        self.delivery.submit(Job(self.images, self.work, tuple(chunks), self.source, stopper, policy=self.policy))

    def ready(self) -> None:
        self.delivery.ready()

    def restored(self, pid: int) -> None:
        self.delivery.restored(pid)
        self.delivery.close()
        self._ended = True

    def abandon(self, *, wait: float = 30.0) -> CkptError | None:
        """The restore failed or was not made: the supervisor stops (killing whatever was restored)
        and exits; its directory goes, nothing is left. Returns the error delivery had failed with
        by itself (a damaged chunk, say, found while the restore ran), which is then the cause."""
        if self._ended:
            return None
        self._ended = True
        self.delivery.abandon()
        self.delivery.close()
        try:
            self.delivery.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.delivery.process.kill()
        try:
            status = Status.read(self.work)
        except (OSError, ValueError, CorruptData):
            status = None
        remove_record(self.work)
        if status is None or status.error is None or status.error.get("type") == "Abandoned":
            return None
        return error_of(status)
