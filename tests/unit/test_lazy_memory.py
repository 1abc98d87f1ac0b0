"""Lazy restore plumbing: a checkpoint's memory read by place while its chunks arrive, and what
happens when they do not (retry with backoff, a deadline, digest failures)."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import replace

import pytest
import zstandard
from lazy_helpers import EAGER, LAZY, make_checkpoint

from checkpointer.errors import CorruptData, NotFound, RegistryError, Unreachable
from checkpointer.lazy.chunks import ChunkMap
from checkpointer.lazy.memory import DELIVERY_RETRY, Memory, decompress, lazy_order, transient
from checkpointer.lazy.pagemap import PageIndex
from checkpointer.lazy.protocol import PAGE_SIZE as P
from checkpointer.lazy.source import LayoutSource
from checkpointer.retry import RetryPolicy

TASKS = {1: [(0x400000, 3, EAGER), (0x7F0000000000, 1200, LAZY), (0x7F0000600000, 500, LAZY)]}


class ScriptedSource:
    """A LayoutSource whose fetches first fail as scripted (per call number), and that counts."""

    def __init__(self, layout, script=None) -> None:
        self.inner = LayoutSource(layout)
        self.script = script or (lambda digest, n: None)
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def read_blob(self, desc):
        with self.lock:
            n = self.calls[desc.digest] = self.calls.get(desc.digest, 0) + 1
        action = self.script(desc.digest, n)
        if isinstance(action, BaseException):
            raise action
        if callable(action):
            action()
        return self.inner.read_blob(desc)

    def close(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def syn(tmp_path):
    return make_checkpoint(tmp_path, TASKS, chunk_size=1 << 20)


def _memory(syn, source, **kw) -> Memory:
    index = PageIndex.load(syn.images)
    return Memory(source, ChunkMap(syn.chunks), index, **kw)


def test_reads_give_the_bytes_of_the_pages_file(syn):
    memory = _memory(syn, ScriptedSource(syn.layout))
    data = syn.memory[1]
    rng = random.Random(3)
    for _ in range(60):
        start = rng.randrange(0, len(data) // P) * P
        length = rng.randrange(1, 300) * P
        length = min(length, len(data) - start)
        assert b"".join(memory.read("pages-1.img", start, length)) == data[start:start + length]
    memory.close()


def test_a_failure_that_may_pass_is_retried_with_backoff(syn):
    clock = FakeClock()
    target = syn.chunks[1].digest
    source = ScriptedSource(syn.layout, lambda d, n: Unreachable("connection refused") if d == target and n <= 3
                            else None)
    memory = _memory(syn, source, policy=RetryPolicy(tries=100, base=0.1, cap=2, deadline=30), clock=clock,
                     sleep=clock.sleep)
    chunk = ChunkMap(syn.chunks).chunks("pages-1.img")[1]
    assert b"".join(memory.read("pages-1.img", chunk.offset, P)) == syn.memory[1][chunk.offset:chunk.offset + P]
    assert source.calls[target] == 4
    assert len(clock.sleeps) == 3 and all(0 <= s <= 2 for s in clock.sleeps)
    assert memory.failure is None
    memory.close()


def test_a_source_down_past_the_deadline_fails_every_read(syn):
    clock = FakeClock()
    source = ScriptedSource(syn.layout, lambda d, n: Unreachable("cannot reach registry r: connection refused"))
    memory = _memory(syn, source, policy=RetryPolicy(tries=100, base=0.5, cap=4, deadline=20), clock=clock,
                     sleep=clock.sleep)
    with pytest.raises(Unreachable, match="still failing after") as caught:
        memory.read("pages-1.img", 5 * P, P)
    assert "connection refused" in str(caught.value)
    assert sum(clock.sleeps) <= 20 and len(clock.sleeps) >= 4  # backed off, and gave up at the deadline
    assert isinstance(memory.failure, Unreachable)
    with pytest.raises(Unreachable):  # any other read now fails too: the restore must be stopped
        memory.read("pages-1.img", len(syn.memory[1]) - P, P)
    memory.close()


def test_a_chunk_that_fails_its_digest_is_not_retried(syn):
    chunk = ChunkMap(syn.chunks).chunks("pages-1.img")[2]
    path = syn.layout.blob_path(chunk.desc.digest)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    source = ScriptedSource(syn.layout)
    memory = _memory(syn, source)
    with pytest.raises(CorruptData, match="digest mismatch"):
        memory.read("pages-1.img", chunk.offset + P, P)
    assert source.calls[chunk.desc.digest] == 1
    assert isinstance(memory.failure, CorruptData)
    memory.close()


def test_a_missing_blob_is_final(syn):
    chunk = ChunkMap(syn.chunks).chunks("pages-1.img")[0]
    syn.layout.blob_path(chunk.desc.digest).unlink()
    memory = _memory(syn, ScriptedSource(syn.layout))
    with pytest.raises(NotFound):
        memory.read("pages-1.img", 0, P)
    memory.close()


def test_a_stalled_source_fails_the_read_at_the_deadline(syn):
    release = threading.Event()
    source = ScriptedSource(syn.layout, lambda d, n: release.wait)
    memory = _memory(syn, source, policy=replace(DELIVERY_RETRY, deadline=0.4))
    idles = []
    start = time.monotonic()
    with pytest.raises(Unreachable, match="did not arrive from .* within 0.4 s"):
        memory.read("pages-1.img", 0, P, idle=lambda: idles.append(1))
    assert 0.35 <= time.monotonic() - start < 2
    assert len(idles) > 10  # the server reads requests while it waits
    release.set()
    memory.close()


def test_transient_is_what_may_pass():
    assert transient(Unreachable("x"))
    assert transient(RegistryError("x", status=503)) and transient(RegistryError("x", status=429))
    assert not transient(RegistryError("x", status=404)) and not transient(RegistryError("x", status=401))
    assert not transient(CorruptData("x")) and not transient(NotFound("x"))


def test_prefetch_stays_within_the_budget_and_serving_lets_chunks_go(syn):
    index = PageIndex.load(syn.images)
    cmap = ChunkMap(syn.chunks)
    biggest = max(c.length for c in cmap.chunks("pages-1.img"))
    peak = []
    memory = Memory(ScriptedSource(syn.layout), cmap, index, budget=2 * biggest)
    real_want = memory.want

    def watching_want(chunk, *, urgent):
        real_want(chunk, urgent=urgent)
        peak.append(memory.resident)

    memory.want = watching_want
    order = lazy_order(cmap, index)
    memory.prefetch(order)
    for offset, length in index.lazy_ranges("pages-1.img"):  # what the daemon would ask, in order
        for pos in range(offset, offset + length, 64 * P):
            n = min(64 * P, offset + length - pos)
            assert b"".join(memory.read("pages-1.img", pos, n)) == syn.memory[1][pos:pos + n]
            memory.served("pages-1.img", pos, n)
    assert max(peak) <= 2 * biggest
    assert memory.resident == 0  # every lazy byte was served: nothing is held
    memory.close()


def test_chunks_of_equal_content_are_fetched_once(tmp_path):
    syn = make_checkpoint(tmp_path, {1: [(0x7F0000000000, 2048, LAZY)]}, zero_fraction=1.0, chunk_size=1 << 20)
    digests = {c.digest for c in syn.chunks}
    assert len(digests) < len(syn.chunks)
    source = ScriptedSource(syn.layout)
    memory = _memory(syn, source)
    for pos in range(0, 2048 * P, 256 * P):
        assert b"".join(memory.read("pages-1.img", pos, 256 * P)) == bytes(256 * P)
    assert sum(source.calls.values()) == len(digests)
    memory.close()


def test_decompress_takes_one_frame_or_several_and_nothing_else():
    data = random.Random(9).randbytes(300_000) + bytes(200_000)
    one = zstandard.ZstdCompressor(level=1).compress(data)
    several = b"".join(zstandard.ZstdCompressor(level=1).compress(data[i:i + 100_000])
                       for i in range(0, len(data), 100_000))
    assert decompress(one, len(data), "c") == data
    assert decompress(several, len(data), "c") == data
    for bad, length in ((one, len(data) + 1), (one, len(data) - 1), (several, len(data) - 1),
                        (one + one, len(data)), (b"garbage", 7), (one[:-10], len(data))):
        with pytest.raises(CorruptData):
            decompress(bad, length, "c")


def test_a_prefetch_that_lags_behind_the_faults_fetches_nothing_already_served(syn):
    """The daemon's faults can run ahead of the background prefetch: a chunk whose every lazy
    byte was served is not fetched again by the prefetch (nobody would ask for it, and it would
    stay held). A fault on it, should one come, still fetches it."""
    index = PageIndex.load(syn.images)
    cmap = ChunkMap(syn.chunks)
    source = ScriptedSource(syn.layout)
    memory = Memory(source, cmap, index)
    for offset, length in index.lazy_ranges("pages-1.img"):
        memory.read("pages-1.img", offset, length)
        memory.served("pages-1.img", offset, length)
    assert memory.resident == 0
    fetched = dict(source.calls)
    for chunk in lazy_order(cmap, index):  # what a lagging prefetch then asks for
        memory.want(chunk, urgent=False)
    assert memory.resident == 0 and source.calls == fetched
    first = next(iter(lazy_order(cmap, index)))
    memory.want(first, urgent=True)
    assert memory.resident == first.length
    memory.close()
