"""A checkpoint's memory, readable by place while its chunks still arrive: chunks are fetched from
a ChunkSource (verified there), decompressed, and held until every lazy byte of them was served.
What is asked for now goes first; the rest is prefetched in the order the lazy-pages daemon asks
for it, never more than `budget` bytes ahead. A fetch that fails in a way that may pass is retried
with backoff; no read waits longer than the policy's deadline; a chunk that cannot be had fails
every read from then on (the caller must then stop the restored process)."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable

from ..errors import CkptError, CorruptData, RegistryError, Unreachable, as_ckpt_error
from ..retry import RetryPolicy
from .chunks import Chunk, ChunkMap
from .decode import decompress
from .pagemap import PageIndex
from .source import ChunkSource

log = logging.getLogger(__name__)


# The retries of a chunk fetch (checkpointer/retry.py's one policy): a pause of up to 0.1 s,
# doubled after each failure up to 2 s, for as long as the deadline allows. The deadline is also
# the longest any read waits for its chunk.
DEADLINE = 30.0
DELIVERY_RETRY = RetryPolicy(tries=1 << 30, base=0.1, cap=2.0, deadline=DEADLINE)


def transient(exc: CkptError) -> bool:
    """May trying again help? A registry that cannot be reached, or answers 408/429/5xx, may come
    back; a digest mismatch, a missing blob or refused access will not."""
    if isinstance(exc, Unreachable):
        return True
    if isinstance(exc, RegistryError) and not isinstance(exc, CorruptData):
        return exc.status is None or exc.status in (408, 429) or exc.status >= 500
    return False


class _Entry:
    __slots__ = ("length", "data", "error", "ready", "remaining", "used", "trouble", "read")

    def __init__(self, length: int, remaining: int, now: float) -> None:
        self.length = length
        self.data: bytes | None = None
        self.error: CkptError | None = None
        self.ready = threading.Event()
        self.remaining = remaining  # lazy bytes of this content not served yet
        self.used = now
        self.trouble: CkptError | None = None  # the last failure of a fetch still being retried
        self.read = False  # served from at least once (a chunk only prefetched is still ahead)


class Memory:
    def __init__(self, source: ChunkSource, chunk_map: ChunkMap, index: PageIndex, *,
                 policy: RetryPolicy = DELIVERY_RETRY, jobs: int = 4, budget: int = 256 << 20,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source, self.map, self.policy = source, chunk_map, policy
        self.deadline = policy.deadline if policy.deadline is not None else DEADLINE
        self.budget = budget
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        # Contents whose every lazy byte went to the daemon: a prefetch that lags behind the
        # faults must not fetch one again (nobody would ask for it, and it would stay held).
        self._served_out: set[str] = set()
        self._resident = 0  # decompressed bytes held or being fetched
        self._queue: list[tuple[int, int, Chunk]] = []
        self._seq = itertools.count()
        self._closed = False
        self.failure: CkptError | None = None
        self.fetched_bytes = 0  # compressed bytes the source handed over
        self._lazy = _lazy_bytes_by_digest(chunk_map, index)
        self._workers = [threading.Thread(target=self._work, name=f"lazy-fetch-{i}", daemon=True) for i in range(jobs)]
        for worker in self._workers:
            worker.start()
        self._prefetcher: threading.Thread | None = None

    # -- what the server calls ---------------------------------------------------------------

    def read(self, pages_file: str, offset: int, length: int, *,
             idle: Callable[[], None] | None = None) -> list[memoryview]:
        """Bytes [offset, offset + length) of `pages_file`, as pieces. Waits for them at most the
        policy's deadline, calling `idle` every few milliseconds meanwhile; raises the error that
        made them impossible to have."""
        chunks = self.map.covering(pages_file, offset, length)
        for chunk in chunks:  # ask for all at once: they are fetched side by side
            self.want(chunk, urgent=True)
        pieces, start = [], self._clock()
        for chunk in chunks:
            data = self._wait(chunk, start, idle)
            lo, hi = max(offset, chunk.offset) - chunk.offset, min(offset + length, chunk.end) - chunk.offset
            pieces.append(memoryview(data)[lo:hi])
        if sum(len(p) for p in pieces) != length:
            raise CorruptData(f"{pages_file} holds no bytes at [{offset}, {offset + length})")
        return pieces

    def served(self, pages_file: str, offset: int, length: int) -> None:
        """Those bytes went to the daemon: a chunk all of whose lazy bytes went is let go."""
        with self._lock:
            for chunk in self.map.covering(pages_file, offset, length):
                entry = self._entries.get(chunk.desc.digest)
                if entry is None:
                    continue
                entry.remaining -= min(offset + length, chunk.end) - max(offset, chunk.offset)
                if entry.remaining <= 0 and entry.ready.is_set():
                    self._served_out.add(chunk.desc.digest)
                    self._drop(chunk.desc.digest)

    def release_unneeded(self) -> None:
        """Let go of the fetched chunks that hold no lazy page still to serve (those read only to
        write the pages the restore reads itself)."""
        with self._lock:
            for digest in [d for d, e in self._entries.items() if e.ready.is_set() and e.remaining <= 0]:
                self._drop(digest)

    def want(self, chunk: Chunk, *, urgent: bool) -> None:
        with self._lock:
            if not urgent and chunk.desc.digest in self._served_out:
                return
            if self._closed or chunk.desc.digest in self._entries:
                entry = self._entries.get(chunk.desc.digest)
                if entry is not None:
                    entry.used = self._clock()
                return
            self._entries[chunk.desc.digest] = _Entry(chunk.length, self._lazy.get(chunk.desc.digest, 0), self._clock())
            self._resident += chunk.length
            heapq.heappush(self._queue, (0 if urgent else 1, next(self._seq), chunk))
            self._lock.notify_all()

    def prefetch(self, chunks: Iterable[Chunk]) -> None:
        """Fetch `chunks` in this order in the background, within the budget."""
        order = list(chunks)
        self._prefetcher = threading.Thread(target=self._prefetch, args=(order,), name="lazy-prefetch", daemon=True)
        self._prefetcher.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    @property
    def resident(self) -> int:
        return self._resident

    # -- inside ----------------------------------------------------------------------------------

    def _wait(self, chunk: Chunk, start: float, idle: Callable[[], None] | None) -> bytes:
        with self._lock:
            while True:
                entry = self._entries.get(chunk.desc.digest)
                if entry is None:  # let go in between (served twice): fetch it again
                    self._lock.release()
                    try:
                        self.want(chunk, urgent=True)
                    finally:
                        self._lock.acquire()
                    continue
                if entry.ready.is_set():
                    if entry.error is not None:
                        raise entry.error
                    entry.used, entry.read = self._clock(), True
                    assert entry.data is not None
                    return entry.data
                if self.failure is not None:
                    raise self.failure
                left = self.deadline - (self._clock() - start)
                if left <= 0:
                    why = f" (last error: {entry.trouble})" if entry.trouble else ""
                    where = getattr(self.source, "where", "its source")
                    raise Unreachable(f"chunk {chunk.desc.digest} of {chunk.pages_file} did not arrive from {where} "
                                      f"within {self.deadline:g} s{why}", hint="check the network and the registry")
                if idle is None:
                    self._lock.wait(min(left, 0.5))
                    continue
                self._lock.wait(min(left, 0.005))
                self._lock.release()
                try:
                    idle()
                finally:
                    self._lock.acquire()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                _, _, chunk = heapq.heappop(self._queue)
                entry = self._entries.get(chunk.desc.digest)
            if entry is None:
                continue
            try:
                packed = self._fetch(chunk, entry)
                data = decompress(packed, chunk.length, f"pages chunk {chunk.desc.digest}")
            except Exception as exc:  # a foreign one too: the readers hear why at once, not at the deadline
                if not isinstance(exc, CkptError):
                    log.exception("pages chunk %s: unexpected failure", chunk.desc.digest)
                exc = as_ckpt_error(f"pages chunk {chunk.desc.digest} could not be read", exc)
                log.info("pages chunk %s cannot be had: %s", chunk.desc.digest, exc)
                with self._lock:
                    entry.error = exc
                    self.failure = self.failure or exc
                    entry.ready.set()
                    self._lock.notify_all()
                continue
            with self._lock:
                self.fetched_bytes += len(packed)
                entry.data = data
                entry.ready.set()
                self._lock.notify_all()

    def _fetch(self, chunk: Chunk, entry: _Entry) -> bytes:
        """The chunk's verified blob, retried by the policy while the trouble may pass and its
        deadline (from the first try) allows."""
        attempts, started = self.policy.start(sleep=self._sleep, clock=self._clock), self._clock()
        while True:
            try:
                return self.source.read_blob(chunk.desc)
            except CkptError as exc:
                entry.trouble = exc
                if not transient(exc) or self._closed:
                    raise
                pause = attempts.failed()
                if pause is None:
                    raise type(exc)(f"{exc} (still failing after {self._clock() - started:.1f} s and "
                                    f"{attempts.failures} tries)", hint=exc.hint) from None
                log.info("pages chunk %s: %s; retry %d in %.2f s", chunk.desc.digest, exc, attempts.failures, pause)
                attempts.pause(pause)

    def _drop(self, digest: str) -> None:
        entry = self._entries.pop(digest)
        self._resident -= entry.length
        self._lock.notify_all()

    def _prefetch(self, order: list[Chunk]) -> None:
        for chunk in order:
            with self._lock:
                while not self._closed and self.failure is None and chunk.desc.digest not in self._entries \
                        and self._resident + chunk.length > self.budget:
                    if not self._evict_idle():
                        self._lock.wait(0.2)
                if self._closed or self.failure is not None:
                    return
            self.want(chunk, urgent=False)

    def _evict_idle(self, idle: float = 2.0) -> bool:
        """Let go of the chunk used longest ago among those served from before but not for `idle`
        seconds (the rest of its pages were unmapped, say, so the daemon will not ask for them);
        it is fetched again if needed. A chunk only prefetched is never let go: it is ahead of
        the daemon, which is merely slow to get there."""
        now = self._clock()
        candidates = [(e.used, d) for d, e in self._entries.items()
                      if e.ready.is_set() and e.read and now - e.used > idle]
        if not candidates:
            return False
        self._drop(min(candidates)[1])
        return True


def _lazy_bytes_by_digest(chunk_map: ChunkMap, index: PageIndex) -> dict[str, int]:
    """For each chunk content, how many lazy bytes in all the places it is stored."""
    out: dict[str, int] = {}
    for name in chunk_map.files():
        for offset, length in index.lazy_ranges(name):
            for chunk in chunk_map.covering(name, offset, length):
                overlap = min(offset + length, chunk.end) - max(offset, chunk.offset)
                out[chunk.desc.digest] = out.get(chunk.desc.digest, 0) + overlap
    return out


def lazy_order(chunk_map: ChunkMap, index: PageIndex) -> list[Chunk]:
    """The chunks holding lazy pages, in the order the daemon asks for them: process by process
    (in pid order), each in address order (which is file order); each content once."""
    seen: set[str] = set()
    out = []
    for pid in sorted(index.tasks):
        task = index.tasks[pid]
        for offset, length in sorted((r.offset, r.length) for r in task.runs if r.lazy):
            for chunk in chunk_map.covering(task.pages_file, offset, length):
                if chunk.desc.digest not in seen:
                    seen.add(chunk.desc.digest)
                    out.append(chunk)
    return out
