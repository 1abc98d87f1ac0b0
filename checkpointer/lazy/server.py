"""The page server: answers a lazy-pages daemon's PS_IOV_GET requests from a checkpoint's memory.

Answers go out in request order, as the daemon expects; requests queued behind an answer that
waits for its chunk are read meanwhile, so their chunks are fetched side by side. `serve()`
returns when the daemon says every page is in (PS_IOV_CLOSE), or when delivery cannot go on:
then it leaves the socket open, because the daemon exits once the socket closes and a restored
process whose memory has not all arrived must be stopped first.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections import deque
from dataclasses import dataclass

from ..errors import CkptError, CorruptData, CriuFailed
from ..progress import OnProgress, Update, noop
from . import protocol as ps
from .memory import Memory
from .pagemap import PageIndex

log = logging.getLogger(__name__)


class DaemonGone(CriuFailed):
    """The lazy-pages daemon went away before every page was in."""


@dataclass(frozen=True, slots=True)
class Outcome:
    complete: bool  # the daemon reported every page in
    served_bytes: int
    requests: int
    first_request: float | None  # monotonic time of the first request (None: none came)
    error: CkptError | None = None


SEND_BUFFER = 4 << 20


class PageServer:
    """One thread does it all: a thread hand-off per request cost more than the rest of an answer
    (a restore of a process that reads its memory at once sends thousands of one-page requests).
    While an answer waits for its chunk, requests behind it are read and their chunks asked for."""

    def __init__(self, sock: socket.socket, index: PageIndex, memory: Memory, *,
                 on_progress: OnProgress = noop) -> None:
        self.sock, self.index, self.memory = sock, index, memory
        self.on_progress = on_progress
        self.total = index.lazy_bytes()
        self.served_bytes = 0
        self.requests = 0
        self.first_request: float | None = None
        self._buffer = bytearray()
        self._pending: deque[tuple[ps.Message, tuple[str, int, int] | None]] = deque()
        self._eof = False
        self._stop_error: CkptError | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:  # room for a whole answer (1 MiB and its header): one send, then on to the next request
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass

    def serve(self) -> Outcome:
        try:
            while True:
                if not self._pending:
                    self._take(block=True)
                if self._stop_error is not None:
                    return self._outcome(self._stop_error)
                if not self._pending:
                    if self._eof:
                        return self._outcome(DaemonGone("the lazy-pages daemon closed its connection before "
                                                        "every page was in"))
                    continue
                message, place = self._pending.popleft()
                if place is None:  # PS_IOV_CLOSE: every page is in
                    self.sock.sendall(ps.CLOSE_ACK)
                    return self._outcome(None, complete=True)
                self._answer(message, place)
        except CkptError as exc:
            return self._outcome(exc)
        except OSError as exc:
            return self._outcome(DaemonGone(f"the lazy-pages daemon's connection broke: {exc}"))
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self, error: CkptError) -> None:
        """Make `serve()` return `error` soon (from another thread); the socket stays open."""
        self._stop_error = error
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _answer(self, message: ps.Message, place: tuple[str, int, int]) -> None:
        pages_file, offset, nr_pages = place
        length = nr_pages * ps.PAGE_SIZE
        pieces = self.memory.read(pages_file, offset, length, idle=self._take_ahead)
        _send_all(self.sock, [ps.pages_header(message, nr_pages), *pieces])
        self.memory.served(pages_file, offset, length)
        self.served_bytes += length
        self.on_progress(Update("lazy pages", min(self.served_bytes, self.total), self.total))

    def _take_ahead(self) -> None:
        """Called while an answer waits for its chunk: read what else came, start its fetches."""
        if self._stop_error is not None:
            raise self._stop_error
        self._take(block=False)

    def _take(self, *, block: bool) -> None:
        """Read what the daemon sent (waiting for something if `block`); queue whole messages."""
        if self._eof:
            return
        if block:
            readable, _, _ = select.select([self.sock.fileno(), self._wake_r], [], [])
            if self.sock.fileno() not in readable:
                return
        try:
            got = self.sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not got:
            self._eof = True
            if self._buffer:
                raise CorruptData("the lazy-pages daemon's connection ended inside a message")
            return
        self._buffer += got
        whole = len(self._buffer) - len(self._buffer) % ps.HEADER.size
        for pos in range(0, whole, ps.HEADER.size):
            self._queue(ps.decode(bytes(self._buffer[pos:pos + ps.HEADER.size])))
        del self._buffer[:whole]

    def _queue(self, message: ps.Message) -> None:
        self.requests += 1
        if self.first_request is None:
            self.first_request = time.monotonic()
        if message.command in (ps.PS_IOV_CLOSE, ps.PS_IOV_FORCE_CLOSE):
            self._pending.append((message, None))
            return
        if message.command != ps.PS_IOV_GET:
            raise CorruptData(f"the lazy-pages daemon sent command {message.command:#x}, which a page server "
                              "answering it never gets")
        place = self._place(message)
        for chunk in self.memory.map.covering(place[0], place[1], place[2] * ps.PAGE_SIZE):
            self.memory.want(chunk, urgent=True)  # start now; the answer waits its turn
        self._pending.append((message, place))

    def _place(self, message: ps.Message) -> tuple[str, int, int]:
        task = self.index.tasks.get(message.dst_id)
        found = task.locate(message.vaddr, message.nr_pages) if task and message.nr_pages else None
        if task is None or found is None:
            raise CorruptData(f"the lazy-pages daemon asked for {message.nr_pages} pages at {message.vaddr:#x} of "
                              f"process {message.dst_id}, which the checkpoint does not hold")
        return task.pages_file, found[0], found[1]

    def _outcome(self, error: CkptError | None, *, complete: bool = False) -> Outcome:
        return Outcome(complete, self.served_bytes, self.requests, self.first_request, error)


def _send_all(sock: socket.socket, pieces: list[bytes | memoryview]) -> None:
    views = [memoryview(p).cast("B") for p in pieces]
    while views:
        sent = sock.sendmsg(views[:512])
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0
