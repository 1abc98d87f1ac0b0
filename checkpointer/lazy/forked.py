"""The supervisor as a fork of the calling process instead of a new interpreter: a fork takes a few
milliseconds, a Python start with ckpt's imports a few hundred on a busy machine, and that start
would be on the way to the restored container's first instruction.

The caller must fork before it starts any thread (only the forking thread lives on in the child,
and a lock another thread held would stay held there). The child leaves the caller's session,
keeps only its pipes and stdio, and ends with os._exit: it never runs the caller's clean-ups."""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


class ForkedProcess:
    """Enough of subprocess.Popen for Delivery: pid, stdin, wait, poll, returncode, kill."""

    def __init__(self, pid: int, stdin: TextIO | None = None) -> None:
        self.pid, self.stdin = pid, stdin
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)  # closed with the object: several threads may wait on it
        self._reap = threading.Lock()

    def poll(self) -> int | None:
        return self.wait(0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None and not select.select([self._pidfd], [], [], timeout)[0]:
            if timeout == 0:
                return None
            raise subprocess.TimeoutExpired(["forked process"], timeout or 0)
        with self._reap:
            if self.returncode is None:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def __del__(self) -> None:
        os.close(self._pidfd)

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, 9)


def fork_supervisor(work: Path, main: Callable[[list[str]], int]) -> tuple[ForkedProcess, int]:
    """Fork a supervisor for `work`, whose entry point is `main` (supervisor.main, given by the
    caller: this module imports nothing of the supervisor's); returns it and the read end of its
    ready pipe."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    words_r, words_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.setsid()
            for sig in (signal.SIGTERM, signal.SIGINT):  # the caller's handlers raise in its main loop
                signal.signal(sig, signal.SIG_DFL)
            os.dup2(words_r, 0)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.dup2(ready_w, 3)
            os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the caller's sockets and files are not ours
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = sys.stderr = open(1, "w", closefd=False)
            logging.root.handlers = []  # the caller's: their files are closed here (not ours to close)
            code = main([str(work), "3"])
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(words_r)
    return ForkedProcess(pid, os.fdopen(words_w, "w")), ready_r
