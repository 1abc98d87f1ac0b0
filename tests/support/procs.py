"""Processes seen from outside, for the end-to-end tests."""
from __future__ import annotations

import time


def process_gone(pid: int | None, timeout: float = 10.0) -> bool:
    """Whether process `pid` is gone (or a zombie) within `timeout` seconds; no pid counts as gone."""
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return not pid
