"""The command line's one error boundary (checkpointer/cli.py main): the exit code a command asks
for is the process's exit code, and Ctrl-C or SIGTERM anywhere ends with 130 and the standard
message (the README's table of exit codes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest

REPO = Path(__file__).resolve().parents[2]


def _ckpt(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "checkpointer", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "CKPT_HOME": str(home)}, timeout=60)


def test_a_command_that_asks_for_an_exit_code_gets_it(tmp_path: Path) -> None:
    store = Layout(tmp_path / "store", create=True)
    config = store.put_bytes(b'{"x": 1}', "application/vnd.ckpt.checkpoint.config.v1+json")
    layer = store.put_bytes(b"m" * 1000, mt.LAYER_TAR_ZSTD)
    store.tag("broken:v1", store.put_manifest(Manifest(config=config, layers=(layer,))))
    store.blob_path(layer.digest).unlink()
    res = _ckpt("fsck", "--json", home=tmp_path)
    assert json.loads(res.stdout)["ok"] is False
    assert res.returncode == 8, "a damaged store must not look fine to a script"


def test_sigint_and_sigterm_end_a_command_with_130(tmp_path: Path) -> None:
    fifo_dir = tmp_path / "etc"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "hooks.json")  # `ckpt hooks status` waits on it
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen([sys.executable, "-m", "checkpointer", "hooks", "status", "--config-dir",
                                 str(fifo_dir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            time.sleep(1.5)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, (sig, err)
        assert "ERROR: interrupted" in err
