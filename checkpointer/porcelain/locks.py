"""One ckpt at a time per container: two saves of one container, or two restores to one name,
would otherwise race in CRIU and in the bundle directory. The second gets Busy at once."""
from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import Busy

# Host-wide (not per $CKPT_HOME): two stores must not work on one container either.
LOCK_DIR = Path("/run/ckpt/locks")


@contextmanager
def container_lock(runtime: str, root: Path | None, name: str, fallback: Path) -> Iterator[None]:
    """Hold the lock of container `name` of `runtime` (state dir `root`) for the block."""
    key = hashlib.sha256(f"{runtime}\0{root or ''}\0{name}".encode()).hexdigest()[:32]
    try:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_DIR / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # not ours to write (a user other than root): this user's own home
        directory = fallback / "locks"
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another ckpt is saving or restoring {runtime} container {name!r} right now",
                       hint="wait for it to finish, then run this again") from None
        yield
    finally:
        os.close(fd)
