"""Drive the sample workload (samples/workload.c) under runc and read its state file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WorkloadState:
    nonce: str
    counter: int
    checksum: str
    verified: str
    ticks_since_verify: int


def parse_state(text: str) -> WorkloadState:
    """The workload's state file ("key=value ..."), wherever it was read from."""
    fields = dict(item.split("=", 1) for item in text.split())
    return WorkloadState(fields["nonce"], int(fields["counter"]), fields["checksum"], fields["verified"],
                         int(fields["ticks_since_verify"]))


def read_state(rootfs: Path) -> WorkloadState:
    return parse_state((rootfs / "state").read_text())


def wait_for(rootfs: Path, predicate, timeout: float = 15.0) -> WorkloadState:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = read_state(rootfs)
            if predicate(last):
                return last
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"workload state never matched within {timeout}s; last seen: {last}")


def make_bundle(template: Path, dest: Path, args: list[str] | None = None) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    if args is not None:
        spec_path = dest / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["process"]["args"] = args
        spec_path.write_text(json.dumps(spec))
    return dest


def start(runc_root: Path, bundle: Path, name: str) -> None:
    # stdio on /dev/null: the workload moves its own stdio to the container's /dev/null at once.
    subprocess.run(["runc", "--root", str(runc_root), "run", "--detach", "--bundle", str(bundle), name],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=30)


def runc_status(runc_root: Path, name: str) -> str | None:
    res = subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True, text=True)
    return json.loads(res.stdout)["status"] if res.returncode == 0 else None


def ckpt(*args: str, home: Path, check: bool = False, timeout: float = 300, env: dict | None = None,
         input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `ckpt` command line (python -m checkpointer) with its own CKPT_HOME."""
    full_env = {**os.environ, **(env or {}), "CKPT_HOME": str(home)}
    res = subprocess.run([sys.executable, "-m", "checkpointer", *args], capture_output=True, text=True,
                         env=full_env, timeout=timeout, cwd=REPO, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"ckpt {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res
