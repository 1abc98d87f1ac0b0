"""Byte counts of a push or pull, added up across worker threads and handed to `on_progress`."""
from __future__ import annotations

import threading

from ..progress import OnProgress, Update


class Counter:
    """Adds up bytes done across threads and reports them."""

    def __init__(self, phase: str, total: int, on_progress: OnProgress | None) -> None:
        self.phase, self.total, self.done = phase, total, 0
        self._cb = on_progress
        self._lock = threading.Lock()

    def add(self, n: int, item: str = "") -> None:
        with self._lock:
            self.done += n
            if self._cb:
                self._cb(Update(self.phase, self.done, self.total, item))
