"""What the porcelain's tests share besides fixtures (conftest.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fake_engine import FakeEngine


class FakePodman(FakeEngine):
    name = "podman"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def leftovers(root: Path) -> list[Path]:
    """Work directories (and their contents) left under the private home and tmpfs: none should be."""
    found = []
    for parent in (root / "home" / "tmp", *(root / "shm").glob("ckpt*")):
        if parent.is_dir():
            found += [p for p in parent.iterdir()]
    return found


def tags(root: Path) -> list[str]:
    index = root / "home" / "store" / "index.json"
    if not index.exists():
        return []
    return [m["annotations"]["org.opencontainers.image.ref.name"] for m in json.loads(index.read_text())["manifests"]]
