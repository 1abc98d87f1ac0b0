"""Two ckpt runs on one container at once: one wins cleanly, the other gets a clear error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.sample import REPO, ckpt, make_bundle, runc_status, start, wait_for

from checkpointer.errors import AlreadyExists, Busy

BIG = ["/bin/workload", "--mem", "256", "--state", "/state", "--interval-ms", "50", "--verify-every", "1000000"]


def _together(*commands: list[str], home: Path) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "CKPT_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "checkpointer", *cmd], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for cmd in commands]
    return [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in procs]


def test_two_saves_of_one_container(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    bundle = make_bundle(bundle_template, tmp_path / "bundle", args=BIG)
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 2, timeout=60)
    results = _together(["save", "--runc-root", str(runc_root), container_name, "first:v1"],
                        ["save", "--runc-root", str(runc_root), container_name, "second:v1"], home=ckpt_home)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, Busy.exit_code], [(r.returncode, r.stderr) for r in results]
    loser = next(r for r in results if r.returncode)
    assert "another ckpt is saving or restoring" in loser.stderr
    winner = "first:v1" if results[0].returncode == 0 else "second:v1"
    assert [e["reference"] for e in json.loads(ckpt("ls", "--json", home=ckpt_home, check=True).stdout)] == [winner]
    out = ckpt("restore", "--runc-root", str(runc_root), winner, "--json", home=ckpt_home, check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > before.counter).nonce == before.nonce


def test_two_restores_to_one_name(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    bundle = make_bundle(bundle_template, tmp_path / "bundle", args=BIG)
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 2, timeout=60)
    ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, "snap:v1", home=ckpt_home,
         check=True)
    results = _together(["restore", "--runc-root", str(runc_root), "snap:v1", "--name", "twin"],
                        ["restore", "--runc-root", str(runc_root), "snap:v1", "--name", "twin"], home=ckpt_home)
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] in (Busy.exit_code, AlreadyExists.exit_code), \
        [(r.returncode, r.stderr) for r in results]
    assert runc_status(runc_root, "twin") == "running"
    rootfs = ckpt_home / "containers" / "twin" / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > before.counter).nonce == before.nonce
