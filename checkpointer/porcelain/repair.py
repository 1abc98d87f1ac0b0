"""The step between a dump and anything that reads its images, where CRIU's own mistakes in a
dumped image directory are repaired in place: right after every engine's dump (so the checkpoint
carries the repaired images, and a save that fails puts the container back from them) and just
before every restore (a checkpoint made before a repair existed, or by another tool)."""
from __future__ import annotations

from pathlib import Path


def repair_images(images: Path) -> None:
    """Nothing to repair yet: criu/fixups.py's repairs are called from here once they land."""
