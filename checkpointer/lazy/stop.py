"""Stopping a restored container whose memory cannot all arrive: SIGKILL every process of it and
wait until its init is gone, and only then let the userfaultfds close (see uffd.py)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
from dataclasses import dataclass

from ..errors import RuntimeFailed


@dataclass(frozen=True, slots=True)
class Stopper:
    """`kill` SIGKILLs every process of the container (`runc --root R kill --all ID KILL`);
    `cleanup` runs after they are gone (`runc --root R delete --force ID`)."""

    kill: tuple[str, ...]
    cleanup: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> dict:
        return {"kill": list(self.kill), "cleanup": [list(c) for c in self.cleanup]}

    @classmethod
    def from_json(cls, obj: dict) -> "Stopper":
        return cls(tuple(str(a) for a in obj["kill"]), tuple(tuple(str(a) for a in c) for c in obj.get("cleanup", ())))


def stop_container(stopper: Stopper, init_pid: int | None, *, wait: float = 10.0) -> None:
    """Kill the container and wait (up to `wait` seconds) for its init `init_pid` to be gone.
    A process waiting in a page fault dies of SIGKILL like any other. The init gets its SIGKILL
    straight away (in its own pid namespace that takes every process of it along): `runc kill
    --all` first freezes the cgroup, and a process waiting in a fault inside a system call can
    hold a freeze up for seconds."""
    pidfd = None
    if init_pid:
        try:
            pidfd = os.pidfd_open(init_pid)
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # gone already
    try:
        res = subprocess.run(stopper.kill, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], wait)
            if not ready:
                raise RuntimeFailed(f"the restored container (init {init_pid}) did not die within {wait:g} s",
                                    output=(res.stdout + res.stderr).strip())
        elif res.returncode != 0 and init_pid is None:
            raise RuntimeFailed(f"could not kill the restored container: {' '.join(stopper.kill)} failed",
                                output=(res.stdout + res.stderr).strip())
    finally:
        if pidfd is not None:
            os.close(pidfd)
    for command in stopper.cleanup:
        subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, check=False)
