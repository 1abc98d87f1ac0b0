"""Copies of the lazy-pages daemon's userfaultfd descriptors, taken with pidfd_getfd(2).

Found by experiment (CRIU 4.2.1, Linux 6.18): when the last descriptor of a restored process's
userfaultfd closes, the kernel unregisters its ranges and every page not delivered yet reads as
zeros: the process runs on with wrong memory (the sample workload died of a NULL pointer read
from a zeroed page). The daemon closes them when it exits, and it exits as soon as its page server
goes away. While another process holds a copy, a fault on a missing page just waits (killably)."""
from __future__ import annotations

import ctypes
import errno
import os

_SYS_PIDFD_GETFD = 438  # the same number on every architecture (one table since Linux 5.1)
_libc = ctypes.CDLL(None, use_errno=True)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    fd: int = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
    return fd


def userfaultfds(pid: int) -> list[int]:
    """The descriptor numbers of `pid` that are userfaultfds."""
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return []
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:[userfaultfd]":
                out.append(int(name))
        except OSError:
            continue
    return sorted(out)


class UffdHolder:
    """Holds copies of every userfaultfd the daemon `pid` has had; `refresh()` takes the new ones
    (the daemon gets one per restored process, and one per fork while pages are still coming).
    Copies are only ever added, never dropped before `close()`: the moment the daemon's own
    descriptors vanish (it died) is the moment the copies matter."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.fds: list[int] = []
        self._seen: set[int] = set()

    def refresh(self) -> bool:
        """Copy the daemon's userfaultfds not copied yet; True if there were any. (A descriptor
        number the daemon closed and used again for a new userfaultfd is missed.)"""
        new = [n for n in userfaultfds(self.pid) if n not in self._seen]
        for number in new:
            try:
                self.fds.append(pidfd_getfd(self.pidfd, number))
            except OSError as exc:
                if exc.errno not in (errno.EBADF, errno.ESRCH):  # closed meanwhile, or the daemon is gone
                    raise
            self._seen.add(number)
        return bool(new)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
