"""The supervisor's side of the guard (guard.py): start it, hand it what it must hold, and start
another one at once if it dies while there is something to guard."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any

from ..errors import CkptError
from .forked import ForkedProcess
from .stop import Stopper

FDS_PER_MESSAGE = 250  # SCM_RIGHTS carries at most 253 (SCM_MAX_FD)
log = logging.getLogger(__name__)

ACK_TIMEOUT = 10.0


class GuardClient:
    def __init__(self, stopper: Stopper | None) -> None:
        self.stopper = stopper
        self._lock = threading.RLock()
        self._held: list[int] = []
        self._pids: list[int] = []
        self._daemon: int | None = None
        self._released = False
        self._process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._control: socket.socket | None = None

    @classmethod
    def start(cls, stopper: Stopper | None = None, *, fork: bool = False) -> GuardClient:
        """A running guard; `stopper` may come later (set_stopper), before there is anything to hold.
        `fork`: the guard is a fork of this process (milliseconds, not an interpreter start); only
        while this process has no other thread. A replacement guard is always a new interpreter."""
        client = cls(stopper)
        client._spawn(fork=fork)
        return client

    def set_stopper(self, stopper: Stopper) -> None:
        with self._lock:
            self.stopper = stopper
            self._send({"stopper": stopper.to_json()})

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def hold(self, fds: list[int], *, pids: list[int] | None = None, daemon: int | None = None) -> None:
        """Have the guard hold copies of `fds` (instead of what it held), and kill `pids` (the
        restored processes) if the supervisor dies. The client keeps copies of its own too, for a
        replacement guard: the caller's descriptor numbers may be closed and reused."""
        with self._lock:
            if self._released:
                return
            copies = [os.dup(fd) for fd in fds]
            old, self._held = self._held, copies
            for fd in old:
                os.close(fd)
            if pids is not None:
                self._pids = list(pids)
            if daemon is not None:
                self._daemon = daemon
            # The kernel passes at most 253 descriptors in one message: a container of more
            # processes has its userfaultfds sent in parts, the guard holding them all once the last came.
            rest = copies
            while len(rest) > FDS_PER_MESSAGE:
                self._send({"part": FDS_PER_MESSAGE}, rest[:FDS_PER_MESSAGE])
                rest = rest[FDS_PER_MESSAGE:]
            self._send({"hold": len(copies), "pids": self._pids, "daemon": self._daemon}, rest)

    def release(self) -> None:
        """Nothing to guard any more (every page is in, or the container was stopped already)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._control is not None:
                try:
                    self._control.send(json.dumps({"release": True}).encode())
                except OSError:
                    pass
                self._control.close()
            for fd in self._held:
                os.close(fd)
            self._held = []
        if self._process is not None:
            try:
                self._process.wait(ACK_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def _spawn(self, *, fork: bool = False) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            if fork:
                process: subprocess.Popen[bytes] | ForkedProcess = ForkedProcess(_fork_guard(theirs.fileno()))
            else:
                process = subprocess.Popen([sys.executable, "-m", "checkpointer.lazy.guard"], stdin=theirs.fileno(),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True)
        self._control = ours
        try:
            if self.stopper is not None:
                self._send({"stopper": self.stopper.to_json()})
            else:
                self._send({})
            if self._held or self._pids:
                self._send({"hold": len(self._held), "pids": self._pids, "daemon": self._daemon}, self._held)
        except CkptError:
            process.kill()
            process.wait()
            raise
        self._process = process  # only now: a new pid means a guard that holds everything
        threading.Thread(target=self._watch, args=(process,), name="lazy-guard", daemon=True).start()

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        assert self._control is not None
        data = json.dumps(message).encode()
        try:
            socket.send_fds(self._control, [data], fds or [])
            self._control.settimeout(ACK_TIMEOUT)
            if self._control.recv(16) != b"ok":
                raise OSError("the guard did not acknowledge")
        except OSError as exc:
            raise CkptError(f"the guard of the lazy restore does not answer: {exc}") from None

    def _watch(self, process: subprocess.Popen[bytes] | ForkedProcess) -> None:
        code = process.wait()
        with self._lock:
            if self._released or process is not self._process:
                return
            log.warning("the lazy restore's guard exited (%s); starting another", code)
            if self._control is not None:
                self._control.close()
            try:
                self._spawn()
            except CkptError as exc:
                log.error("could not start another guard: %s", exc)


def _fork_guard(control: int) -> int:
    """Fork the guard: its own session, its control socket on fd 0, nothing else of ours."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.setsid()
        os.dup2(control, 0)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        from . import guard

        code = guard.main()
    finally:
        os._exit(code)
