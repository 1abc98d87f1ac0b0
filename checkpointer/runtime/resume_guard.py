"""The resume guard's own process (see runc.ResumeGuard): resumes a paused runc container unless
ckpt says "keep" before it goes away. If ckpt dies mid-dump, CRIU (under runc checkpoint, which
outlives ckpt) re-freezes the container when it finishes, so the guard first waits for that dump.

    python -m checkpointer.runtime.resume_guard MARKER CONTAINER RUNC [RUNC-ARGS...]

MARKER is a string only that dump's command line holds (its image path).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

DUMP_WAIT = 300.0


def _dump_running(marker: bytes) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker in f.read():
                    return True
        except OSError:
            continue
    return False


def _status(runc: list[str], container: str) -> str | None:
    res = subprocess.run([*runc, "state", container], capture_output=True, text=True)
    return json.loads(res.stdout).get("status") if res.returncode == 0 else None


def main(argv: list[str]) -> int:
    marker, container, runc = argv[0].encode(), argv[1], argv[2:]
    if sys.stdin.readline().strip() == "keep":
        return 0
    deadline = time.monotonic() + DUMP_WAIT
    while _dump_running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(100):
        status = _status(runc, container)
        if status in (None, "running", "stopped"):
            return 0
        subprocess.run([*runc, "resume", container], capture_output=True)
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
