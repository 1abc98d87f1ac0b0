"""Real CRIU through pycriu's RPC: save a bare process tree by pid, kill it, restore it, prove it went on."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.sample import REPO, ckpt, read_state, wait_for

from checkpointer.errors import AlreadyExists, CriuFailed, NotFound


@pytest.fixture(scope="session")
def workload_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in ("criu", "gcc") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {', '.join(missing) or 'nothing else'} (scripts/setup.sh --test)")
    binary = tmp_path_factory.mktemp("workload") / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(REPO / "samples" / "workload.c")], check=True)
    return binary


class Trees:
    """Process trees a test starts (and those ckpt restores for it); all killed afterwards."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.pids: list[int] = []

    def start(self, state_dir: Path, *extra: str) -> int:
        state_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(["setsid", str(self.binary), "--mem", "8", "--state", str(state_dir / "state"),
                                 "--interval-ms", "50", "--verify-every", "4", *extra],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pids.append(proc.pid)  # setsid execs in place: the pid is the workload's
        self.reap = proc
        return proc.pid

    def alive(self, pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/exe").resolve() == self.binary.resolve() and \
                "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False

    def kill(self, pid: int) -> None:
        if self.alive(pid):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.alive(pid) and time.monotonic() < deadline:
            if self.reap.pid == pid:
                self.reap.poll()
            time.sleep(0.05)

    def cleanup(self) -> None:
        for pid in self.pids:
            self.kill(pid)


@pytest.fixture
def trees(workload_binary: Path):  # noqa: ANN201
    tracker = Trees(workload_binary)
    yield tracker
    tracker.cleanup()


def test_save_kill_restore_continues(trees, tmp_path, ckpt_home):
    state_dir = tmp_path / "x"
    pid = trees.start(state_dir)
    before = wait_for(state_dir, lambda s: s.counter >= 5)

    saved = json.loads(ckpt("save", "--pid", str(pid), "job:v1", "--json", home=ckpt_home, check=True).stdout)
    assert saved["references"] == ["job:v1"] and saved["container"] == "workload"
    trees.reap.wait(timeout=10)  # CRIU stops the tree after the dump
    assert not trees.alive(pid)
    at_save = read_state(state_dir)

    view = json.loads(ckpt("inspect", "job:v1", "--json", home=ckpt_home, check=True).stdout)
    assert view["config"]["engine"] == "process" and view["config"]["container"]["id"] == str(pid)
    assert {layer["role"] for layer in view["layers"]} == {"criu", "pages"}
    [proc] = view["processes"]
    assert proc["command"].startswith(str(trees.binary))

    out = json.loads(ckpt("restore", "job:v1", "--json", home=ckpt_home, check=True).stdout)
    assert out["engine"] == "process" and out["pid"] == pid and out["bundle"] is None
    assert trees.alive(pid)
    # The restored tree is not ckpt's child: ckpt has exited, and the tree lives on in a session of its own.
    assert os.getsid(pid) == pid
    after = wait_for(state_dir, lambda s: s.counter > at_save.counter + 4 and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
    assert after.checksum == before.checksum
    assert after.verified == before.checksum, "memory changed across the checkpoint"

    again = ckpt("restore", "job:v1", home=ckpt_home)
    assert again.returncode == AlreadyExists.exit_code and f"pid {pid} is in use" in again.stderr
    ok = json.loads(ckpt("restore", "job:v1", "--if-running-ok", "--json", home=ckpt_home, check=True).stdout)
    assert ok["already_running"] is True and ok["pid"] == pid
    # A bare process tree has nothing to make a container from.
    res = ckpt("restore", "job:v1", "--engine", "runc", home=ckpt_home)
    assert res.returncode == 2 and "no root filesystem" in " ".join(res.stderr.split())


def test_leave_running_and_default_name(trees, tmp_path, ckpt_home):
    state_dir = tmp_path / "y"
    pid = trees.start(state_dir)
    before = wait_for(state_dir, lambda s: s.counter >= 3)
    saved = json.loads(ckpt("save", "--pid", str(pid), "--leave-running", "--json", home=ckpt_home,
                            check=True).stdout)
    assert saved["references"][0] == "workload:latest" and saved["left_running"] is True
    assert trees.alive(pid)
    assert wait_for(state_dir, lambda s: s.counter > before.counter + 3).nonce == before.nonce


def test_criu_refusal_leaves_the_process_running(trees, tmp_path, ckpt_home):
    state_dir = tmp_path / "z"
    pid = trees.start(state_dir, "--lock", str(state_dir / "lockfile"))
    before = wait_for(state_dir, lambda s: s.counter >= 3)
    res = ckpt("save", "--pid", str(pid), "locked:v1", home=ckpt_home)
    assert res.returncode == CriuFailed.exit_code, res.stderr
    assert "CRIU log" in res.stderr and "lock" in res.stderr.lower()
    assert trees.alive(pid)
    assert wait_for(state_dir, lambda s: s.counter > before.counter + 3).nonce == before.nonce
    assert ckpt("ls", "--json", home=ckpt_home, check=True).stdout.strip() == "[]"


def test_unknown_pid_is_not_found(ckpt_home):
    res = ckpt("save", "--pid", "999999999", home=ckpt_home)
    assert res.returncode == NotFound.exit_code and "no process with pid 999999999" in res.stderr
