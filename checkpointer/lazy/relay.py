"""A relay on the socket over which `criu restore --lazy-pages` hands its userfaultfds to the
lazy-pages daemon, so that the supervisor knows the restored processes from the start.

The restore connects to `lazy-pages.socket` in its work directory; the daemon listens in a work
directory of its own, and the relay sits between them. What passes (criu/uffd.c, send_uffd and
lazy_pages_finish_restore), in the host's byte order:

    per process:  int32 pid (as in the images; negative for a zombie, then nothing follows)
                  one byte with the process's userfaultfd attached (SCM_RIGHTS)
    at the end:   u32 0x52535446 ("restore finished"), sent before the processes are let go

Each process sends its own pid and descriptor, so the kernel's credentials on that message
(SO_PASSCRED) name the process as this host sees it: the relay opens a pidfd on it at once, and
can kill the restored processes at any point of the restore, before `runc restore` returns and
before runc knows the container. It keeps a copy of every userfaultfd it passes on (see uffd.py
for why the copies matter). The messages are passed on with their boundaries: the daemon reads
the pid with a plain recv(), which would drop a descriptor sent in the same message.
"""
from __future__ import annotations

import array
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CriuFailed

log = logging.getLogger(__name__)

SOCKET_NAME = "lazy-pages.socket"
RESTORE_FINISHED = 0x52535446
_PID = struct.Struct("=i")
_UCRED = struct.Struct("=iII")
_ANCILLARY = socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(_UCRED.size)


@dataclass(frozen=True, slots=True)
class Task:
    vpid: int  # the pid in the checkpoint (pagemap-<vpid>.img)
    pid: int  # the pid on this host
    pidfd: int
    uffd: int  # our copy of its userfaultfd


class Relay:
    """Listens on `restore_work`/lazy-pages.socket and relays to the daemon's socket. `on_task` is
    called (from the relay's thread) for each process as it comes, `on_finished` when the restore
    says it is done."""

    def __init__(self, restore_work: Path, daemon_work: Path, *, on_task: Callable[[Task], None],
                 on_finished: Callable[[], None], on_error: Callable[[CriuFailed], None]) -> None:
        self.on_task, self.on_finished, self.on_error = on_task, on_finished, on_error
        self.tasks: list[Task] = []
        self.finished = False
        self.connected = threading.Event()  # a restore came
        # Socket paths are reached through descriptors of their directories: a work directory may
        # be deeper than the 108 bytes a unix socket address holds.
        self._dirs = [os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in (restore_work, daemon_work)]
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        old = os.umask(0o177)  # the socket is created 0600: only root may hand descriptors to it
        try:
            self._listener.bind(f"/proc/self/fd/{self._dirs[0]}/{SOCKET_NAME}")
        finally:
            os.umask(old)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._run, name="lazy-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop relaying (a restore still connecting then fails) and let go of every copy."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for fd in self._dirs:
            os.close(fd)
        self._dirs = []
        for task in self.tasks:
            for fd in (task.pidfd, task.uffd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.tasks = []

    def _run(self) -> None:
        try:
            restore, _ = self._listener.accept()
        except OSError:
            return  # closed before the restore came
        self.connected.set()
        with restore:
            restore.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                daemon.connect(f"/proc/self/fd/{self._dirs[1]}/{SOCKET_NAME}")
                self._relay(restore, daemon)
            except Exception as exc:  # whatever it is, the restore must hear of it (no hang)
                log.warning("lazy-pages socket relay: %s", exc)
                self.on_error(exc if isinstance(exc, CriuFailed) else
                              CriuFailed(f"the restore's descriptors could not be passed to criu lazy-pages: {exc}"))
            finally:
                daemon.close()

    def _relay(self, restore: socket.socket, daemon: socket.socket) -> None:
        data, fds, sender = bytearray(), list[int](), 0
        expect_fd_for: int | None = None  # the pid whose descriptor comes next
        while True:
            while True:  # take whole messages off the front of what arrived
                if expect_fd_for is not None:
                    if not data or not fds:
                        break
                    del data[:1]
                    uffd = fds.pop(0)
                    daemon.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [uffd]))])
                    self._task(expect_fd_for, sender, uffd)
                    expect_fd_for = None
                    continue
                if len(data) < _PID.size:
                    break
                (value,) = _PID.unpack_from(data)
                daemon.sendall(bytes(data[:_PID.size]))
                del data[:_PID.size]
                if value & 0xFFFFFFFF == RESTORE_FINISHED:
                    self.finished = True
                    self.on_finished()
                elif value >= 0:
                    expect_fd_for = value
            got, ancillary, flags, _ = restore.recvmsg(4096, _ANCILLARY)
            if not got:
                for fd in fds:
                    os.close(fd)
                if not self.finished:  # the restore failed (and killed what it had made)
                    raise CriuFailed("the restore ended before it had restored every process")
                return
            if flags & socket.MSG_CTRUNC:
                raise CriuFailed("the restore sent more descriptors at once than the relay takes")
            data += got
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(payload[:len(payload) - len(payload) % 4])
                    fds.extend(received)
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = _UCRED.unpack_from(payload)[0]

    def _task(self, vpid: int, pid: int, uffd: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1  # gone already: nothing to kill
        task = Task(vpid, pid, pidfd, uffd)  # our copy of uffd stays open: that is the point
        self.tasks.append(task)
        self.on_task(task)
