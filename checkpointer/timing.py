"""Where the time goes: `with phase("dump"):` logs how long a step took to the "ckpt.timing"
logger. The CLI shows these lines with --timings (or CKPT_TIMINGS=1); nothing is printed here."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("ckpt.timing")
_start = time.perf_counter()


@contextmanager
def phase(name: str) -> Iterator[None]:
    begin = time.perf_counter()
    try:
        yield
    finally:
        end = time.perf_counter()
        log.info("%-18s %7.3f s  (at %.3f s)", name, end - begin, end - _start)
