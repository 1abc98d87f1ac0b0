"""Which repositories of a registry this store has pushed to or pulled from, most recent first:
a push to another repository of the same registry can then mount the blobs it already has there
(`POST ?mount=&from=`) instead of uploading them again."""
from __future__ import annotations

import json
from pathlib import Path

from .. import atomic
from ..reference import RegistryRef

FILE = "registry-repos.json"
KEEP = 8


def _read(store: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((store / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {h: [r for r in repos if isinstance(r, str)] for h, repos in data.items() if isinstance(repos, list)}


def sources(store: Path, dest: RegistryRef) -> tuple[str, ...]:
    """Repositories of `dest`'s registry, other than its own, that may hold its blobs."""
    return tuple(r for r in _read(store).get(dest.api_host, []) if r != dest.repository)[:1]


def remember(store: Path, ref: RegistryRef) -> None:
    """Note that `ref`'s repository now holds this store's blobs (best effort: a hint, not a record)."""
    data = _read(store)
    repos = [ref.repository] + [r for r in data.get(ref.api_host, []) if r != ref.repository]
    data[ref.api_host] = repos[:KEEP]
    try:
        atomic.write_bytes(store / FILE, json.dumps(data).encode())
    except OSError:
        pass
