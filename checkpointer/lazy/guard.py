"""The guard of a lazy restore: a small process, in a session of its own, that keeps the restored
container from running on with missing memory if the page supervisor dies (SIGKILL included).

It holds copies of the supervisor's end of the page-server socket (so the lazy-pages daemon does
not see it close and exit) and of the daemon's userfaultfds (so a fault on a missing page waits
instead of reading zeros). When its control socket closes without a "release", the supervisor is
gone: it kills the container, waits for it to die, and only then lets those descriptors go; then it
kills the daemon too (one still waiting for a restore would wait for ever).

    python -m checkpointer.lazy.guard      (fd 0: a SOCK_SEQPACKET control socket)

Messages, one JSON object each, descriptors attached with SCM_RIGHTS:
    {}                            hello (the first message may come before there is a stopper)
    {"stopper": {...}}            how to kill the container (stop.Stopper)
    {"hold": N, "pids": [...], "daemon": PID}
                                  hold these N fds (replacing what was held before); the restored
                                  processes' pids, when known, and the daemon's (each opened as a
                                  pidfd at once)
    {"release": true}             all is well (or already handled): let go and exit
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

from .stop import Stopper, stop_container

MAX_FDS = 4096


def run(control: socket.socket) -> int:
    stopper: Stopper | None = None
    pidfds: dict[int, int] = {}
    daemon: int | None = None
    held: list[int] = []
    parts: list[int] = []  # descriptors of a hold whose last part has not come yet
    try:
        while True:
            data, fds, _, _ = socket.recv_fds(control, 1 << 16, MAX_FDS)
            if not data:  # the supervisor is gone: kill before letting go
                if stopper is not None:
                    stop_container(stopper, list(pidfds.values()))
                if daemon is not None:
                    signal.pidfd_send_signal(daemon, signal.SIGKILL)
                return 1
            message = json.loads(data)
            if "part" in message:  # the first descriptors of a hold too large for one message
                parts.extend(fds)
                control.send(b"ok")
                continue
            if "hold" in message:
                held, old, parts = [*parts, *fds], held, []
                for fd in old:
                    os.close(fd)
            else:
                for fd in fds:
                    os.close(fd)
            if message.get("daemon") and daemon is None:
                try:
                    daemon = os.pidfd_open(message["daemon"])
                except OSError:
                    pass
            for pid in message.get("pids", ()):
                if pid not in pidfds:
                    try:
                        pidfds[pid] = os.pidfd_open(pid)
                    except OSError:
                        pass  # gone already: nothing to kill
            if "stopper" in message:
                stopper = Stopper.from_json(message["stopper"])
            if message.get("release"):
                return 0
            control.send(b"ok")
    finally:
        for fd in [*held, *parts, *pidfds.values(), *([daemon] if daemon is not None else [])]:
            os.close(fd)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    control = socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)
    return run(control)


if __name__ == "__main__":
    sys.exit(main())
