"""`ckpt ls` and `ckpt rm`: the checkpoints in the local store."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorruptData, NotFound, UsageError
from ..format.read import open_checkpoint
from ..reference import StoreRef, parse
from .home import Home
from .pod.places import describe


@dataclass(frozen=True, slots=True)
class StoreEntry:
    reference: str
    digest: str
    container: str
    created: str
    size: int


def list_checkpoints(*, home: Home | None = None) -> list[StoreEntry]:
    home = home or Home()
    store = home.store()
    out = []
    for name, desc in store.refs():
        try:
            if pod := describe(store, desc):
                out.append(StoreEntry(name, desc.digest, *pod))
                continue
            checkpoint = open_checkpoint(store, desc)
        except (CorruptData, NotFound, UsageError):
            out.append(StoreEntry(name, desc.digest, "?", "?", 0))
            continue
        size = checkpoint.manifest.total_size(desc.size)
        out.append(StoreEntry(name, desc.digest, checkpoint.config.container_name, checkpoint.config.created, size))
    return sorted(out, key=lambda e: e.reference)


def remove(ref: str, *, home: Home | None = None) -> tuple[str, int]:
    """Untag `ref` and free the blobs nothing else uses; returns (digest, bytes freed)."""
    home = home or Home()
    parsed = parse(ref)
    if not isinstance(parsed, StoreRef) or parsed.digest:
        raise UsageError(f"`ckpt rm` removes local store entries by NAME[:TAG], not {ref!r}")
    store = home.store()
    desc = store.untag(parsed.ref_name)
    return desc.digest, store.gc()
