"""The relay on the restore's lazy-pages socket, between a stand-in `criu restore` (a real child
process speaking CRIU's wire format) and a stand-in daemon: messages pass with their boundaries
(the daemon reads the pid with a plain recv, which would drop a descriptor sent with it), each
process is known by its host pid from the kernel's credentials, and the relay's copy of each
userfaultfd outlives the daemon's."""
from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading

from checkpointer.lazy.relay import RESTORE_FINISHED, Relay
from checkpointer.lazy.stop import Stopper, stop_container

# What criu restore does on the socket (criu/uffd.c): connect to lazy-pages.socket in its work dir,
# per process send the pid, then one byte with the userfaultfd; a zombie sends a negative pid only;
# at the end "restore finished". A pipe stands in for the userfaultfd.
RESTORE = """
import array, os, socket, struct, sys, time
os.chdir(sys.argv[1])
sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sk.connect("lazy-pages.socket")
r, w = os.pipe()
sk.send(struct.pack("=i", 1))
sk.sendmsg([b"\\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
os.close(w)
sk.send(struct.pack("=i", -7))
sk.send(struct.pack("=I", 0x52535446))
print(r, flush=True)
time.sleep(120)
"""


def _daemon(path: str, got: list) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(struct.error):  # a restore that ends early sends less
            got.append(("pid", struct.unpack("=i", conn.recv(4))[0]))
            data, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(4))
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload)
            got.append(("fd", data, list(fds)))
            got.append(("pid", struct.unpack("=i", conn.recv(4))[0]))
            got.append(("fin", struct.unpack("=I", conn.recv(4))[0]))
            got.append(("eof", conn.recv(1)))

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_the_relay_passes_everything_on_and_knows_the_processes(tmp_path):
    restore_work, daemon_work = tmp_path / "w" / ("x" * 90), tmp_path / "d" / ("y" * 90)  # longer than 108 bytes
    restore_work.mkdir(parents=True)
    daemon_work.mkdir(parents=True)
    got: list = []
    cwd = os.getcwd()
    os.chdir(daemon_work)
    try:
        listener = _daemon("lazy-pages.socket", got)
    finally:
        os.chdir(cwd)
    tasks, finished = [], threading.Event()
    relay = Relay(restore_work, daemon_work, on_task=tasks.append, on_finished=finished.set,
                  on_error=lambda exc: got.append(("error", exc)))
    assert oct((restore_work / "lazy-pages.socket").stat().st_mode & 0o777) == "0o600"
    restore = subprocess.Popen([sys.executable, "-c", RESTORE, str(restore_work)], stdout=subprocess.PIPE, text=True)
    try:
        int(restore.stdout.readline())
        assert finished.wait(10)
        assert [t.vpid for t in tasks] == [1] and tasks[0].pid == restore.pid  # the host pid, from the kernel
        restore.kill()  # the stand-in closes its socket: the relay passes the end on
        restore.wait()
        listener.close()
        for _ in range(200):
            if len(got) == 5:
                break
            threading.Event().wait(0.01)
        assert got[0] == ("pid", 1)
        assert got[1][0] == "fd" and got[1][1] == b"\0" and len(got[1][2]) == 1  # the descriptor came through
        assert got[2:] == [("pid", -7), ("fin", RESTORE_FINISHED), ("eof", b"")]
        daemons_copy = got[1][2][0]
        # The relay keeps a copy of the very descriptor the daemon got (the same pipe).
        assert os.readlink(f"/proc/self/fd/{tasks[0].uffd}").startswith("pipe:")
        assert os.readlink(f"/proc/self/fd/{tasks[0].uffd}") == os.readlink(f"/proc/self/fd/{daemons_copy}")
        os.close(daemons_copy)
        relay.close()
        assert relay.tasks == []
    finally:
        restore.kill()
        restore.wait()


def test_the_relay_kills_by_pid_before_the_runtime_knows_the_container(tmp_path):
    restore_work, daemon_work = tmp_path / "w", tmp_path / "d"
    restore_work.mkdir()
    daemon_work.mkdir()
    got: list = []
    listener = _daemon(str(daemon_work / "lazy-pages.socket"), got)
    tasks, finished = [], threading.Event()
    relay = Relay(restore_work, daemon_work, on_task=tasks.append, on_finished=finished.set, on_error=got.append)
    restore = subprocess.Popen([sys.executable, "-c", RESTORE, str(restore_work)], stdout=subprocess.PIPE, text=True)
    try:
        restore.stdout.readline()
        assert finished.wait(10)
        stop_container(Stopper(("false",)), [tasks[0].pidfd], run_kill=False)  # no runtime command at all
        assert restore.wait(5) == -9
    finally:
        restore.kill()
        restore.wait()
        relay.close()
        listener.close()


def test_a_restore_that_ends_before_it_finished_is_an_error(tmp_path):
    """The restore failed (and killed its processes): its socket closes before "restore finished".
    The supervisor must hear of it at once, whether or not ckpt is still there to say so."""
    restore_work, daemon_work = tmp_path / "w", tmp_path / "d"
    restore_work.mkdir()
    daemon_work.mkdir()
    got: list = []
    listener = _daemon(str(daemon_work / "lazy-pages.socket"), got)
    errors: list = []
    relay = Relay(restore_work, daemon_work, on_task=lambda task: None, on_finished=lambda: None,
                  on_error=errors.append)
    failing = RESTORE.replace('sk.send(struct.pack("=I", 0x52535446))', "sys.exit(1)")
    try:
        assert subprocess.run([sys.executable, "-c", failing, str(restore_work)], timeout=30).returncode == 1
        for _ in range(500):
            if errors:
                break
            threading.Event().wait(0.01)
        assert len(errors) == 1 and "ended before it had restored every process" in str(errors[0])
        assert not relay.finished
    finally:
        relay.close()
        listener.close()


def test_a_stopper_removes_the_bundle_once_the_processes_are_gone(tmp_path):
    bundle = tmp_path / "containers" / "web"
    (bundle / "rootfs").mkdir(parents=True)
    stopper = Stopper(("true",), (("true",),), remove=(str(bundle),))
    assert Stopper.from_json(stopper.to_json()) == stopper
    assert Stopper.from_json({"kill": ["true"]}) == Stopper(("true",))  # a job written before `remove`
    victim = subprocess.Popen(["sleep", "60"])
    try:
        stop_container(stopper, [os.pidfd_open(victim.pid)], run_kill=False)
        assert victim.wait(5) == -9 and not bundle.exists()
    finally:
        victim.kill()
        victim.wait()
