"""The pod guard: puts a pod back if ckpt dies while it holds the pod frozen or its network locked,
SIGKILL included. Like the resume guard (resume_guard.py), a small process in its own session
waits on a pipe only ckpt holds; when the pipe closes without the word "keep" it waits for a dump
in flight (one whose command line holds `marker`), drops the pod's network lock, and resumes every
container it was given.

    python -m checkpointer.runtime.pod_guard PLAN-JSON

PLAN: {"marker": str | null, "runc": [runc argv], "resume": [container ids],
       "unlock": netns path | null, "tools": pod_lock.Tools fields | null}
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RuntimeFailed
from .pod_lock import CHAIN, NetnsLock, Tools
from .resume_guard import DUMP_WAIT, _dump_running, _status


class PodGuard:
    """ckpt's end of the pipe. fire(): put the pod back now (and wait for it); keep(): all is well,
    ckpt takes care of the pod from here. Both are safe to call more than once."""

    def __init__(self, *, runc: list[str], resume: list[str], marker: str | None = None,
                 lock: NetnsLock | None = None) -> None:
        plan = {"marker": marker, "runc": runc, "resume": resume, "unlock": lock.netns if lock else None,
                "tools": asdict(lock.tools) if lock else None}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "checkpointer.runtime.pod_guard", json.dumps(plan)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True, cwd=Path(__file__).resolve().parents[2])

    def keep(self) -> None:
        self._finish(b"keep\n")

    def fire(self) -> None:
        """Put the pod back; RuntimeFailed saying what could not be (the guard did what it could)."""
        if self._proc.stdin is not None and self._proc.stdin.closed:
            return  # fired (or kept) before: said once
        self._finish(b"")
        if self._proc.returncode:
            said = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
            raise RuntimeFailed(f"the pod could not be put back entirely: {said or 'its guard failed'}",
                                hint="resume what is still paused (`runc resume ID`) and remove the lock "
                                     f"(`nsenter --net=NETNS iptables -D INPUT -j {CHAIN}; ... -X {CHAIN}`, "
                                     "and ip6tables the same)")

    def _finish(self, verdict: bytes) -> None:
        assert self._proc.stdin is not None
        if not self._proc.stdin.closed:
            try:
                self._proc.stdin.write(verdict)
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        self._proc.wait()


def _resume(runc: list[str], container: str) -> bool:
    """Resume `container`; whether it is no longer paused."""
    for _ in range(100):
        if _status(runc, container) in (None, "running", "stopped"):
            return True
        subprocess.run([*runc, "resume", container], capture_output=True)
        time.sleep(0.05)
    return False


def put_back(plan: dict[str, Any]) -> list[str]:
    """Wait for the dump in flight, drop the lock, resume every container (each as best it can);
    returns what could not be done."""
    problems = []
    # What ckpt left running when it died: a dump (its command line holds `marker`), or the lock
    # being taken (nsenter's holds the namespace's path). Unlocking under either would not last.
    markers = [m.encode() for m in (plan.get("marker"), plan.get("unlock")) if m]
    deadline = time.monotonic() + DUMP_WAIT
    while any(_dump_running(m) for m in markers) and time.monotonic() < deadline:
        time.sleep(0.05)
    if plan.get("unlock") and plan.get("tools"):
        tools = plan["tools"]
        lock = NetnsLock(plan["unlock"], Tools(tools["nsenter"], tuple(tools["restore"]), tuple(tools["check"])))
        try:
            lock.unlock(missing_ok=True)
        except Exception as exc:  # the containers are to be resumed whatever happens here
            problems.append(f"the network lock in {plan['unlock']} stays: {exc}")
    for container in plan.get("resume") or ():
        if not _resume(plan["runc"], container):
            problems.append(f"{container} stays paused")
    return problems


def main(argv: list[str]) -> int:
    plan = json.loads(argv[0])
    if sys.stdin.readline().strip() == "keep":
        return 0
    problems = put_back(plan)
    if problems:
        try:  # ckpt reads this when it fired; when ckpt is dead nobody does
            print("; ".join(problems), file=sys.stderr, flush=True)
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
