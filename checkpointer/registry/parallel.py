"""Run one function over many blobs on a few threads; the first failure cancels what has not started."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_parallel(fn: Callable[[T], None], items: Sequence[T], *, jobs: int, name: str) -> None:
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(items)), thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        errors = [exc for f in futures if f.done() and not f.cancelled() and (exc := f.exception()) is not None]
        if errors:
            for fut in futures:
                fut.cancel()  # those already running finish on their own
            raise errors[0]
