"""A lazy restore of a container with more processes than one message can pass descriptors for
(the kernel's limit is 253): the guard gets every userfaultfd in parts, and the restore goes
through with every process back."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from support.sample import ckpt, make_bundle, start

PROCESSES = 300
SCRIPT = (f"i=0; while [ $i -lt {PROCESSES} ]; do sleep 100000 & i=$((i+1)); done; "
          "touch /ready; while true; do sleep 1; done")


def processes(runc_root: Path, name: str) -> int:
    res = subprocess.run(["runc", "--root", str(runc_root), "ps", "--format", "json", name], capture_output=True,
                         text=True, check=True)
    return len(json.loads(res.stdout))


def test_a_container_of_300_processes_restores_lazily(bundle_template, tmp_path, runc_root, container_name,
                                                      ckpt_home):  # noqa: ANN001
    bundle = make_bundle(bundle_template, tmp_path / "bundle", ["/bin/sh", "-c", SCRIPT])
    start(runc_root, bundle, container_name)
    deadline = time.monotonic() + 60
    while not (bundle / "rootfs" / "ready").exists():
        assert time.monotonic() < deadline, "the workload never started its processes"
        time.sleep(0.1)
    before = processes(runc_root, container_name)
    assert before > PROCESSES
    ckpt("save", "--runc-root", str(runc_root), container_name, "many:v1", home=ckpt_home, check=True)
    out = ckpt("restore", "--lazy", "--wait", "--runc-root", str(runc_root), "many:v1", "--json", home=ckpt_home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["delivered"]["state"] == "complete"
    assert processes(runc_root, container_name) == before
