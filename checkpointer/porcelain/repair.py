"""The step between a dump and anything that reads its images, where CRIU's own mistakes in a
dumped image directory are repaired in place (criu/fixups.py): right after every engine's dump (so
the checkpoint carries the repaired images, and a save that fails puts the container back from
them) and just before every restore (a checkpoint made before a repair existed, or by another tool)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..criu import fixups

log = logging.getLogger(__name__)


def repair_images(images: Path) -> None:
    for line in fixups.repair_images(images):
        log.debug("repaired %s: %s", images, line)
