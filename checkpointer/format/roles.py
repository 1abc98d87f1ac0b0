"""The layer roles of a checkpoint image, and which files of a CRIU image directory go where."""
from __future__ import annotations

from pathlib import Path

CRIU = "criu"  # CRIU image files other than memory pages (small, needed first)
PAGES = "pages"  # pages-*.img: the memory contents (large)
ROOTFS = "rootfs"  # the container's root filesystem
SPEC = "spec"  # the OCI runtime spec (config.json) the container ran with
ENGINE = "engine"  # the engine's own files beside its CRIU images (Podman: config.dump, rootfs-diff.tar, ...)

ALL = (CRIU, PAGES, ROOTFS, SPEC, ENGINE)


def is_pages_file(name: str) -> bool:
    return name.startswith("pages-") and name.endswith(".img")


def split_images(images: Path) -> tuple[list[str], list[str]]:
    """(criu files, pages files) of a CRIU image directory, each sorted."""
    names = sorted(p.name for p in images.iterdir())
    return [n for n in names if not is_pages_file(n)], [n for n in names if is_pages_file(n)]
