"""What the action script takes at post-dump, while CRIU waits: the images and a hold on the rootfs.

CRTOOLS_IMAGE_DIR (/proc/<criu>/fd/N) is valid only while the script runs, and whoever ran the
checkpoint may delete the images right after. Hardlinks cost nothing and survive that; across
filesystems the files are copied (keep the spool on the images' filesystem for speed).

The rootfs may be unmounted as soon as the runtime is done (Podman does), so the script opens it
and hands the descriptor to the publisher: a lazily unmounted tree stays readable through it.
"""
from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP)


@dataclass(frozen=True, slots=True)
class Taken:
    files: int = 0
    bytes: int = 0
    linked: int = 0

    def __add__(self, other: Taken) -> Taken:
        return Taken(self.files + other.files, self.bytes + other.bytes, self.linked + other.linked)


def take_images(src: str | Path, dst: Path) -> Taken:
    """Hardlink (or copy) every regular file of the CRIU image directory `src` into `dst`."""
    dst.mkdir(mode=0o700)
    taken = Taken()
    with os.scandir(src) as entries:
        for entry in entries:
            target = dst / entry.name
            if entry.is_dir(follow_symlinks=False):
                taken += take_images(entry.path, target)
            elif entry.is_file(follow_symlinks=False):
                size = entry.stat(follow_symlinks=False).st_size
                try:
                    os.link(entry.path, target)
                    taken += Taken(1, size, 1)
                except OSError as exc:
                    if exc.errno not in _NO_LINK:
                        raise
                    shutil.copyfile(entry.path, target)
                    taken += Taken(1, size, 0)
    return taken


def hold_rootfs(path: Path) -> tuple[int, int]:
    """(a descriptor of the rootfs directory, the st_dev of its filesystem)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, os.fstat(fd).st_dev


def fd_path(fd: int) -> Path:
    """A path through which this process reads the directory that `fd` holds open."""
    return Path(f"/proc/self/fd/{fd}")
