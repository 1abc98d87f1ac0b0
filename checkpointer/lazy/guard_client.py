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

from ..errors import CkptError
from .stop import Stopper

log = logging.getLogger(__name__)

ACK_TIMEOUT = 10.0


class GuardClient:
    def __init__(self, stopper: Stopper) -> None:
        self.stopper = stopper
        self._lock = threading.RLock()
        self._held: list[int] = []
        self._pid: int | None = None
        self._released = False
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None

    @classmethod
    def start(cls, stopper: Stopper) -> "GuardClient":
        client = cls(stopper)
        client._spawn()
        return client

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def hold(self, fds: list[int]) -> None:
        """Have the guard hold copies of `fds` (instead of what it held). The client keeps copies of
        its own too, to hand to a replacement guard: the caller's numbers may be closed and reused."""
        with self._lock:
            if self._released:
                return
            copies = [os.dup(fd) for fd in fds]
            old, self._held = self._held, copies
            for fd in old:
                os.close(fd)
            self._send({"hold": len(copies)}, copies)

    def container(self, pid: int) -> None:
        with self._lock:
            if self._released:
                return
            self._pid = pid
            self._send({"pid": pid})

    def release(self) -> None:
        """Nothing to guard any more (every page is in, or the container was stopped already)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            try:
                assert self._control is not None
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

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", "checkpointer.lazy.guard"], stdin=theirs,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._control = ours
        try:
            self._send({"stopper": self.stopper.to_json()})
            if self._pid is not None:
                self._send({"pid": self._pid})
            if self._held:
                self._send({"hold": len(self._held)}, self._held)
        except CkptError:
            process.kill()
            process.wait()
            raise
        self._process = process  # only now: a new pid means a guard that holds everything
        threading.Thread(target=self._watch, args=(process,), name="lazy-guard", daemon=True).start()

    def _send(self, message: dict, fds: list[int] | None = None) -> None:
        assert self._control is not None
        data = json.dumps(message).encode()
        try:
            socket.send_fds(self._control, [data], fds or [])
            self._control.settimeout(ACK_TIMEOUT)
            if self._control.recv(16) != b"ok":
                raise OSError("the guard did not acknowledge")
        except OSError as exc:
            raise CkptError(f"the guard of the lazy restore does not answer: {exc}") from None

    def _watch(self, process: subprocess.Popen) -> None:
        code = process.wait()
        with self._lock:
            if self._released or process is not self._process:
                return
            log.warning("the lazy restore's guard exited (%s); starting another", code)
            self._control.close()
            try:
                self._spawn()
            except CkptError as exc:
                log.error("could not start another guard: %s", exc)
