"""What a page supervisor is asked to do (Job), and what it reports while it does it (Status):
both JSON files in the restore's private work directory, so another process (`ckpt`) can show
the state and progress of a lazy restore after the command that started it has returned."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import CorruptData
from ..oci.model import Descriptor
from .memory import DeliveryPolicy
from .stop import Stopper

JOB_FILE = "job.json"
STATUS_FILE = "status.json"

# Status.state: complete (every page is in), failed (the container was killed: see error) and
# exited (the container ended on its own before every page was in) are final.
STARTING, READY, SERVING = "starting", "ready", "serving"
COMPLETE, FAILED, EXITED = "complete", "failed", "exited"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where the pages chunks come from, in a form another process can open again: an OCI layout
    (`layout`), or a registry repository (`host`, `repository`; credentials are looked up there
    the usual way, never written here). `cache` is a layout that keeps what a registry sent."""

    kind: str  # "layout" | "registry"
    layout: str | None = None
    host: str | None = None
    repository: str | None = None
    insecure: bool = False
    plain_http: bool | None = None
    ca_dir: str | None = None
    cache: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    images: Path  # the CRIU image directory, holding the criu role (the pages files are made here)
    work: Path  # CRIU's work directory: lazy-pages.socket, logs, job and status files
    chunks: tuple[Descriptor, ...]  # the pages layers of the checkpoint
    source: SourceSpec
    stopper: Stopper
    policy: DeliveryPolicy = DeliveryPolicy()
    jobs: int = 4
    budget: int = 256 << 20
    remove_images: bool = True  # once every page is in (or the restore failed)

    def to_json(self) -> dict[str, Any]:
        return {"images": str(self.images), "work": str(self.work), "chunks": [d.to_json() for d in self.chunks],
                "source": asdict(self.source), "stopper": self.stopper.to_json(), "policy": asdict(self.policy),
                "jobs": self.jobs, "budget": self.budget, "removeImages": self.remove_images}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Job":
        try:
            return cls(Path(obj["images"]), Path(obj["work"]),
                       tuple(Descriptor.from_json(d) for d in obj["chunks"]), SourceSpec(**obj["source"]),
                       Stopper.from_json(obj["stopper"]), DeliveryPolicy(**obj["policy"]), int(obj["jobs"]),
                       int(obj["budget"]), bool(obj["removeImages"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptData(f"lazy restore job is malformed: {exc!r}") from None

    def write(self) -> Path:
        return write_json(self.work / JOB_FILE, self.to_json())


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
    def from_json(cls, obj: dict[str, Any]) -> "Status":
        try:
            return cls(**obj)
        except TypeError as exc:
            raise CorruptData(f"lazy restore status is malformed: {exc}") from None

    @classmethod
    def read(cls, work: Path) -> "Status":
        return cls.from_json(json.loads((work / STATUS_FILE).read_bytes()))

    def write(self, work: Path) -> None:
        write_json(work / STATUS_FILE, self.to_json())


def write_json(path: Path, obj: Any) -> Path:
    """Replace `path` atomically (a reader never sees half a file); private to its owner."""
    atomic.write_bytes(path, json.dumps(obj).encode())
    return path
