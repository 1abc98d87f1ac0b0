"""Real CRIU images for the format fixtures: one small process tree dumped once per session."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require_criu() -> None:
    """The fixtures hold real CRIU images: dumping needs root, CRIU, pycriu and gcc (CI has them all)."""
    if os.geteuid() != 0:
        pytest.skip("dumping the fixture's CRIU images needs root")
    missing = [tool for tool in ("criu", "gcc") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"dumping the fixture's CRIU images needs {', '.join(missing)} (scripts/setup.sh --test)")


@pytest.fixture(scope="session")
def criu_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRIU image directory of the sample workload (dumped with --leave-running through pycriu)."""
    require_criu()
    from checkpointer.criu import rpc
    from checkpointer.criu.options import CriuOptions

    base = tmp_path_factory.mktemp("criu-images")
    binary = base / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(REPO / "samples" / "workload.c")], check=True)
    proc = subprocess.Popen(["setsid", str(binary), "--mem", "1", "--state", str(base / "state"),
                             "--interval-ms", "50"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (base / "state").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        images, work = base / "images", base / "work"
        images.mkdir()
        work.mkdir()
        rpc.dump(proc.pid, images, work, CriuOptions(leave_running=True))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    return images
