"""One publish job: a checkpoint the runtime took, on its way to the destination its container named.

A job is a directory in the spool (spool.py) holding job.json (this record), the CRIU images or
the packed checkpoint, and the spec. Its state moves spooled -> packing -> publishing ->
published, or to failed (with the error and a hint) from any of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from ..criu.options import CriuOptions

SPOOLED, PACKING, PUBLISHING, PUBLISHED, FAILED = "spooled", "packing", "publishing", "published", "failed"
ACTIVE = (SPOOLED, PACKING, PUBLISHING)
HISTORY = 30


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    state: str
    destination: str
    container_id: str
    container_name: str = ""
    engine: str = "runc"
    image: str = ""  # the image the container runs, when its manager says (the checkpoint's base)
    created: str = ""  # when the runtime's dump finished (UTC)
    updated: str = ""
    criu_options: CriuOptions = field(default_factory=CriuOptions)
    runc_binary: str = "runc"
    rootfs: str = ""  # the rootfs path on the host at dump time
    rootfs_dev: int = 0  # and its st_dev then: a later look must see the same filesystem
    image_dir: str = ""  # where CRIU wrote the images
    spooled_files: int = 0
    spooled_bytes: int = 0
    linked_files: int = 0  # of spooled_files, how many were hardlinked rather than copied
    hook_ms: int = 0  # how long the action script held up the runtime's checkpoint
    attempts: int = 0
    digest: str = ""
    size: int = 0
    error: str = ""
    hint: str = ""
    history: tuple[tuple[str, str], ...] = ()

    def moved(self, state: str, event: str, **changes: Any) -> Job:
        """This job in `state`, with `event` appended to its history."""
        stamp = now()
        history = (*self.history, (stamp, event))[-HISTORY:]
        return replace(self, state=state, updated=stamp, history=history, **changes)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["criu_options"] = self.criu_options.to_json()
        out["history"] = [list(h) for h in self.history]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        values["criu_options"] = CriuOptions.from_json(obj.get("criu_options"))
        values["history"] = tuple((str(t), str(m)) for t, m in obj.get("history") or ())
        return cls(**values)
