"""The guard of a lazy restore, with real processes: when the supervisor dies (SIGKILL), the
guard kills the container and lets the descriptors it holds go only after that; a guard that dies
is replaced at once; a release ends it without killing anything."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from checkpointer.lazy.guard_client import GuardClient
from checkpointer.lazy.stop import Stopper

# A stand-in supervisor: starts a guard that holds the inherited fd, then waits to be killed.
SUPERVISOR = """
import os, sys, time
from checkpointer.lazy.guard_client import GuardClient
from checkpointer.lazy.stop import Stopper
fd, victim = int(sys.argv[1]), int(sys.argv[2])
client = GuardClient.start(Stopper(("true",)))  # the processes die by their pids, not by a command
client.hold([fd], pids=[victim])
os.close(fd)
print(client.pid, flush=True)
time.sleep(120)
"""


def _eof_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_killed_supervisor_gets_the_container_killed_before_the_descriptors_go():
    victim = subprocess.Popen(["sleep", "120"])
    held, peer = socket.socketpair()
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(held.fileno()), str(victim.pid)],
                                  pass_fds=(held.fileno(),), stdout=subprocess.PIPE, text=True)
    try:
        held.close()
        guard_pid = int(supervisor.stdout.readline())
        assert not _eof_within(peer, 0.3)  # the guard holds it
        assert victim.poll() is None
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        assert _eof_within(peer, 10)  # the guard let go ...
        assert victim.poll() == -signal.SIGKILL  # ... after the container was dead (not merely signalled)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{guard_pid}"):
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{guard_pid}")
    finally:
        victim.kill()
        supervisor.kill()
        victim.wait()
        supervisor.wait()


def test_a_killed_guard_is_replaced_and_a_release_kills_nothing():
    victim = subprocess.Popen(["sleep", "120"])
    held, peer = socket.socketpair()
    client = GuardClient.start(Stopper(("true",)))
    try:
        client.hold([held.fileno()], pids=[victim.pid])  # the supervisor keeps its own copy too
        first = client.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while client.pid == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.pid != first
        held.close()
        assert not _eof_within(peer, 0.3)  # the new guard holds the descriptor again
        assert victim.poll() is None  # the old guard's death killed nothing
        client.release()
        assert _eof_within(peer, 5)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
