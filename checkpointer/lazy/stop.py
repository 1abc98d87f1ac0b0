"""Stopping a restored container whose memory cannot all arrive: SIGKILL every process of it and
wait until its init is gone, and only then let the userfaultfds close (see uffd.py)."""
from __future__ import annotations

import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ..errors import RuntimeFailed


@dataclass(frozen=True, slots=True)
class Stopper:
    """`kill` SIGKILLs every process of the container (`runc --root R kill --all ID KILL`);
    `cleanup` runs after they are gone (`runc --root R delete --force ID`); then the directories
    in `remove` (the restored container's bundle) are removed: nothing of it is left."""

    kill: tuple[str, ...]
    cleanup: tuple[tuple[str, ...], ...] = ()
    remove: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kill": list(self.kill), "cleanup": [list(c) for c in self.cleanup], "remove": list(self.remove)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Stopper:
        return cls(tuple(str(a) for a in obj["kill"]), tuple(tuple(str(a) for a in c) for c in obj.get("cleanup", ())),
                   tuple(str(a) for a in obj.get("remove", ())))


def stop_container(stopper: Stopper, pidfds: list[int], *, run_kill: bool = True, wait: float = 10.0) -> None:
    """SIGKILL the restored processes (`pidfds`, open pidfds of them), run the stopper's kill
    command when `run_kill` (the restore is far enough for the runtime to know the container), and
    wait (up to `wait` seconds) until every one of them is gone. A process waiting in a page fault
    dies of SIGKILL like any other. The processes get their SIGKILL straight away: `runc kill
    --all` first freezes the cgroup, and a process waiting in a fault inside a system call can
    hold a freeze up for seconds."""
    for pidfd in pidfds:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # gone already
    output = ""
    if run_kill:
        res = subprocess.run(stopper.kill, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        output = (res.stdout + res.stderr).strip()
    deadline = time.monotonic() + wait
    alive = list(pidfds)
    while alive:
        left = deadline - time.monotonic()
        ready, _, _ = select.select(alive, [], [], max(0.0, left))
        alive = [fd for fd in alive if fd not in ready]
        if alive and left <= 0:
            raise RuntimeFailed(f"{len(alive)} restored processes did not die within {wait:g} s", output=output)
    if run_kill:
        for command in stopper.cleanup:
            subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    for path in stopper.remove:  # the container is gone (or never came to be): its bundle goes too
        shutil.rmtree(path, ignore_errors=True)
