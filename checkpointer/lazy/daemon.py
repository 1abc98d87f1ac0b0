"""CRIU's lazy-pages daemon, started on one end of a socket pair whose other end is the page server.

`criu lazy-pages --page-server --ps-socket FD` takes the inherited socket as its page-server
connection: no TCP port is opened, so no other local user can connect and read the container's
memory. `--status-fd` says when it listens on `lazy-pages.socket` in the work directory, where
`criu restore --lazy-pages` (run by `runc restore --lazy-pages --work-path` the same directory)
hands it the userfaultfds. It exits once every page is in, or once its page server goes away."""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
from pathlib import Path

from ..criu.options import log_tail
from ..errors import CriuFailed, MissingDependency

LOG_NAME = "lazy-pages.log"
READY_TIMEOUT = 30.0


class LazyPagesDaemon:
    def __init__(self, images: Path, work: Path, *, criu: str = "criu", verbosity: int = 2) -> None:
        binary = shutil.which(criu)
        if not binary:
            raise MissingDependency("criu is not installed", hint="install CRIU >= 4 (scripts/setup.sh does)")
        self.log = work / LOG_NAME
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _room_for_requests(theirs)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            # A session of its own: a Ctrl-C or a kill of the caller's process group must not
            # reach it (see uffd.py for what its death does to the restored process).
            self.process = subprocess.Popen(
                [binary, "lazy-pages", "--page-server", "--ps-socket", str(theirs.fileno()),
                 "--images-dir", str(images), "--work-dir", str(work), "--status-fd", str(ready_w),
                 f"-v{verbosity}", "--log-file", LOG_NAME],
                pass_fds=(theirs.fileno(), ready_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()
            os.close(ready_w)
        self._ready_r = ready_r

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        """Until it listens (it starts in the background: the caller does other work meanwhile)."""
        try:
            ready, _, _ = select.select([self._ready_r], [], [], READY_TIMEOUT)
            ok = bool(ready) and os.read(self._ready_r, 1) == b"\0"
        finally:
            os.close(self._ready_r)
        if not ok:
            self.process.poll()
            self.kill()
            raise CriuFailed("criu lazy-pages did not start" + (f" (exit {self.process.returncode})"
                                                               if self.process.returncode is not None else ""),
                             log_tail=log_tail(self.log), hint="the CRIU log lines above say why")

    def failure(self, what: str) -> CriuFailed:
        return CriuFailed(what, log_tail=log_tail(self.log))

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.sock.close()


# The daemon sends a page request for every process in flight at once, without waiting, on a socket
# it made non-blocking: each small request takes about a kilobyte of its send buffer, so the default
# (208 KiB) ran out at about 200 processes and the daemon failed ("Can't send PSI ... Resource
# temporarily unavailable"). Room for thousands; root may go past net.core.wmem_max.
REQUEST_BUFFER = 16 << 20
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def _room_for_requests(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, REQUEST_BUFFER)
    except OSError:  # not root: as much as wmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, REQUEST_BUFFER)
