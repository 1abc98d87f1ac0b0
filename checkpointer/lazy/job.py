"""What a page supervisor is asked to do: a Job, written as job.json in the restore's private work
directory (status.py has what it reports back)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import CorruptData
from ..oci.model import Descriptor
from ..retry import RetryPolicy
from .memory import DELIVERY_RETRY
from .stop import Stopper

JOB_FILE = "job.json"


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
    cache_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    images: Path  # the CRIU image directory, holding the criu role (the pages files are made here)
    work: Path  # CRIU's work directory: lazy-pages.socket, logs, job and status files
    chunks: tuple[Descriptor, ...]  # the pages layers of the checkpoint
    source: SourceSpec
    stopper: Stopper
    policy: RetryPolicy = DELIVERY_RETRY  # retries of a chunk fetch; its deadline bounds every read
    jobs: int = 4
    budget: int = 256 << 20
    remove_images: bool = True  # once every page is in (or the restore failed)

    def to_json(self) -> dict[str, Any]:
        return {"images": str(self.images), "work": str(self.work), "chunks": [d.to_json() for d in self.chunks],
                "source": asdict(self.source), "stopper": self.stopper.to_json(), "policy": asdict(self.policy),
                "jobs": self.jobs, "budget": self.budget, "removeImages": self.remove_images}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Job:
        try:
            return cls(Path(obj["images"]), Path(obj["work"]),
                       tuple(Descriptor.from_json(d) for d in obj["chunks"]), SourceSpec(**obj["source"]),
                       Stopper.from_json(obj["stopper"]), _policy(obj["policy"]), int(obj["jobs"]),
                       int(obj["budget"]), bool(obj["removeImages"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptData(f"lazy restore job is malformed: {exc!r}") from None

    def write(self) -> Path:
        return write_json(self.work / JOB_FILE, self.to_json())


def _policy(obj: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(**{**obj, "schedule": tuple(obj.get("schedule", ()))})


def write_json(path: Path, obj: Any) -> Path:
    """Replace `path` atomically (a reader never sees half a file); private to its owner."""
    atomic.write_bytes(path, json.dumps(obj).encode())
    return path
