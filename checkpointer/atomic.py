"""Replacing a file atomically: readers see the old content or the new, never a part, and a crash
leaves the old content in place.

The new content goes to a file of a fresh random name in the target's directory, created with
O_EXCL|O_NOFOLLOW (a link or file planted at a predictable name cannot redirect the write: ckpt
often runs as root), then fsync, rename over the target, and fsync of the directory so the
rename itself survives a power cut. The rename replaces a link at the target's name, never what
it points to.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_bytes(path: Path | str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data`, atomically."""
    with replace(path, mode=mode) as out:
        out.write(data)


@contextmanager
def replace(path: Path | str, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """A new file, with exactly `mode`, to write `path`'s new content into; it takes the place of
    `path` when the block ends, and is removed instead if the block raises."""
    path = Path(path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd, temp = _create(directory, path.name, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # exactly `mode`, whatever the umask
                yield out  # type: ignore[misc]
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=directory)
            except FileNotFoundError:
                pass
            raise
        os.fsync(directory)
    finally:
        os.close(directory)


def own_link_target(path: Path | str) -> Path:
    """`path`, or the file it links to when nobody but this user (or root) could have made the
    link or could swap any part of the way to its target: the link is theirs, and every directory
    above it and above the target is theirs and writable by no one else (or sticky, as /tmp is).
    Then a write of `path` goes to the target and the link stays (a user's dotfiles often link
    ~/.docker/config.json elsewhere). Any other link is replaced, never written through."""
    path = Path(path)
    uids = {os.geteuid(), 0}
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode) or st.st_uid not in uids or not _private_way(path.parent, uids):
            return path
        target = Path(os.path.realpath(path))
        if not _private_way(target.parent, uids):
            return path
        found = os.lstat(target)
        return target if stat.S_ISREG(found.st_mode) and found.st_uid in uids else path
    except FileNotFoundError:  # no link, or a dangling one: write `path` itself
        return path
    except OSError:
        return path


def _private_way(directory: Path, uids: set[int]) -> bool:
    for part in (directory, *directory.parents):
        st = os.lstat(part)
        if stat.S_ISLNK(st.st_mode):
            return _private_way(Path(os.path.realpath(part)), uids) and \
                _private_way(part.parent, uids)
        if st.st_uid not in uids or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            return False
    return True


def _suffix() -> str:
    return os.urandom(6).hex()


def _create(directory: int, name: str, mode: int) -> tuple[int, str]:
    for _ in range(100):
        temp = f".{name[:200]}.{_suffix()}.tmp"
        try:
            return os.open(temp, _FLAGS, mode, dir_fd=directory), temp
        except FileExistsError:  # someone else's, or a planted one: never touched, take another name
            continue
    raise FileExistsError(f"no free temporary name beside {name!r}")
