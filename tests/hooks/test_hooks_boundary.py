"""`ckpt hooks` run on its own (python -m checkpointer.hooks) ends the way every ckpt command does:
one error boundary, so Ctrl-C exits 130 with the standard message, --debug (or CKPT_DEBUG=1)
shows the traceback, and errors and usage look the same as under `ckpt hooks`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkpointer.errors import NotFound

REPO = Path(__file__).resolve().parents[2]
HOOKS = [sys.executable, "-m", "checkpointer.hooks"]
CKPT = [sys.executable, "-m", "checkpointer"]


def _run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})},
                          timeout=60)


@pytest.fixture
def waiting_config(tmp_path: Path) -> Path:
    """A config dir whose hooks.json is a fifo nobody writes: reading it waits until interrupted."""
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    os.mkfifo(config_dir / "hooks.json")
    return config_dir


@pytest.mark.parametrize("program", [HOOKS, CKPT + ["hooks"]], ids=["python -m checkpointer.hooks", "ckpt hooks"])
def test_ctrl_c_exits_130_with_the_standard_message(program: list[str], waiting_config: Path) -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps it so: give it back.
    proc = subprocess.Popen([*program, "status", "--config-dir", str(waiting_config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(1.5)  # imported and waiting on the fifo
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "ERROR: interrupted" in err
    assert "Traceback" not in err


def test_errors_look_the_same_either_way(tmp_path: Path) -> None:
    args = ["drop", "no-such-job", "--prefix", str(tmp_path)]
    alone, mounted = _run([*HOOKS, *args]), _run([*CKPT, "hooks", *args])
    assert alone.returncode == mounted.returncode == NotFound.exit_code
    assert alone.stderr == mounted.stderr
    assert alone.stderr.startswith("ERROR: no hook job 'no-such-job'")
    assert "Traceback" not in alone.stderr


@pytest.mark.parametrize("argv, env", [
    (CKPT + ["--debug", "hooks"], {}),
    (HOOKS, {"CKPT_DEBUG": "1"}),
    (CKPT + ["hooks"], {"CKPT_DEBUG": "1"}),
], ids=["ckpt --debug hooks", "CKPT_DEBUG=1 python -m checkpointer.hooks", "CKPT_DEBUG=1 ckpt hooks"])
def test_debug_shows_the_traceback(argv: list[str], env: dict, tmp_path: Path) -> None:
    res = _run([*argv, "drop", "no-such-job", "--prefix", str(tmp_path)], env)
    assert res.returncode == NotFound.exit_code
    assert "Traceback (most recent call last)" in res.stderr
    assert "ERROR: no hook job 'no-such-job'" in res.stderr


def test_usage_errors_name_the_command_as_users_type_it() -> None:
    res = _run([*HOOKS, "status", "--no-such-option"])
    assert res.returncode == 2
    assert "Usage: ckpt hooks status" in res.stderr
    assert "No such option: --no-such-option" in res.stderr
