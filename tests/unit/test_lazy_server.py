"""The page server against a scripted lazy-pages daemon on a socket pair (the real daemon is in
tests/e2e/test_lazy_pages.py): answers in order, exact bytes, the close handshake, and on every
failure an outcome that names it while the socket stays open (the daemon must not exit before
the restored process is stopped)."""
from __future__ import annotations

import socket
import threading
from dataclasses import replace

import pytest
from lazy_helpers import EAGER, LAZY, make_checkpoint

from checkpointer.errors import CorruptData
from checkpointer.lazy import protocol as ps
from checkpointer.lazy.chunks import ChunkMap
from checkpointer.lazy.memory import DELIVERY_RETRY, Memory
from checkpointer.lazy.pagemap import PageIndex
from checkpointer.lazy.server import DaemonGone, PageServer
from checkpointer.lazy.source import LayoutSource

P = ps.PAGE_SIZE
BASE = 0x7F0000000000
TASKS = {1: [(0x400000, 2, EAGER), (BASE, 700, LAZY)], 5: [(BASE + 0x10000000, 300, LAZY)]}


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        assert got, "the page server closed the connection"
        buf += got
    return bytes(buf)


@pytest.fixture
def rig(tmp_path):
    syn = make_checkpoint(tmp_path, TASKS)
    index = PageIndex.load(syn.images)
    memory = Memory(LayoutSource(syn.layout), ChunkMap(syn.chunks), index, policy=replace(DELIVERY_RETRY, deadline=2))
    ours, daemon = socket.socketpair()
    server = PageServer(ours, index, memory)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("outcome", server.serve()))
    thread.start()
    yield syn, daemon, server, result, thread
    daemon.close()
    thread.join(5)
    ours.close()
    memory.close()


def test_requests_are_answered_in_order_with_the_pages(rig):
    syn, daemon, server, result, thread = rig
    asks = [(1, BASE + 10 * P, 1), (5, BASE + 0x10000000, 256), (1, BASE, 16), (1, BASE + 690 * P, 64)]
    daemon.sendall(b"".join(ps.encode(ps.PS_IOV_GET, nr_pages=n, vaddr=v, dst_id=pid) for pid, v, n in asks))
    for pid, vaddr, nr in asks:
        header = ps.decode(_recv_exactly(daemon, 32))
        assert (header.command, header.flags, header.vaddr, header.dst_id) == (ps.PS_IOV_ADD_F, ps.PE_PRESENT,
                                                                                vaddr, pid)
        expected = min(nr, 700 - (vaddr - BASE) // P) if pid == 1 else nr  # the last asks past its run
        assert header.nr_pages == expected
        assert _recv_exactly(daemon, expected * P) == syn.page_bytes(pid, vaddr, expected)
    daemon.sendall(ps.encode(ps.PS_IOV_FORCE_CLOSE))
    assert _recv_exactly(daemon, 4) == ps.CLOSE_ACK
    thread.join(5)
    outcome = result["outcome"]
    assert outcome.complete and outcome.error is None
    assert outcome.requests == 5 and outcome.served_bytes == (1 + 256 + 16 + 10) * P


def test_a_request_for_pages_the_checkpoint_lacks_fails_and_keeps_the_socket(rig):
    _, daemon, server, result, thread = rig
    daemon.sendall(ps.encode(ps.PS_IOV_GET, nr_pages=1, vaddr=BASE - P, dst_id=1))
    thread.join(5)
    outcome = result["outcome"]
    assert not outcome.complete and isinstance(outcome.error, CorruptData)
    assert "does not hold" in str(outcome.error)
    daemon.settimeout(0.2)
    with pytest.raises(TimeoutError):  # no answer, and no end of stream either
        daemon.recv(1)


def test_an_unknown_command_is_refused(rig):
    _, daemon, _, result, thread = rig
    daemon.sendall(ps.encode(ps.PS_IOV_OPEN2, dst_id=1))
    thread.join(5)
    assert isinstance(result["outcome"].error, CorruptData)


def test_the_daemon_going_away_is_reported(rig):
    _, daemon, _, result, thread = rig
    daemon.sendall(ps.encode(ps.PS_IOV_GET, nr_pages=1, vaddr=BASE, dst_id=1))
    _recv_exactly(daemon, 32 + P)
    daemon.shutdown(socket.SHUT_WR)
    thread.join(5)
    outcome = result["outcome"]
    assert isinstance(outcome.error, DaemonGone) and outcome.served_bytes == P


def test_stop_makes_serve_return_the_error(rig):
    _, daemon, server, result, thread = rig
    server.stop(CorruptData("stopped from outside"))
    thread.join(5)
    assert str(result["outcome"].error) == "stopped from outside"


def test_a_chunk_that_fails_its_digest_ends_serving(tmp_path):
    syn = make_checkpoint(tmp_path, TASKS)
    index = PageIndex.load(syn.images)
    cmap = ChunkMap(syn.chunks)
    victim = cmap.covering("pages-1.img", 2 * P + 100 * P, P)[0]
    syn.layout.blob_path(victim.desc.digest).write_bytes(b"not the chunk")
    memory = Memory(LayoutSource(syn.layout), cmap, index)
    ours, daemon = socket.socketpair()
    daemon.sendall(ps.encode(ps.PS_IOV_GET, nr_pages=1, vaddr=BASE + 100 * P, dst_id=1))
    outcome = PageServer(ours, index, memory).serve()
    assert isinstance(outcome.error, CorruptData) and outcome.served_bytes == 0
    daemon.settimeout(0.2)
    with pytest.raises(TimeoutError):
        daemon.recv(1)
    memory.close()
