"""ckpt killed with SIGKILL at many points of save, push, pull and restore: the container is either
still running or fully checkpointed, the store passes fsck after repair, the registry never has a
tag on missing data, and the next run succeeds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.registry_server import RegistryServer
from support.sample import REPO, ckpt, make_bundle, runc_status, start, wait_for

KILL_AFTER = (0.15, 0.35, 0.6, 0.9, 1.3, 2.0)  # seconds into the command; it takes about 1-2 s


def _killed(args: list[str], home: Path, after: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "checkpointer", *args], cwd=REPO,
                            env={**os.environ, "CKPT_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _tag_is_whole(reg: RegistryServer, ref: str) -> bool:
    """True if `ref` exists in the registry and every blob it names is there (skopeo copies it)."""
    inspect = subprocess.run(["skopeo", "inspect", "--raw", *reg.skopeo_args(), f"docker://{ref}"],
                             capture_output=True, text=True)
    if inspect.returncode != 0:
        return False
    for blob in json.loads(inspect.stdout)["layers"]:
        head = subprocess.run(["curl", "-sfI", f"{reg.url}/v2/{ref.split('/', 1)[1].split(':')[0]}/blobs/"
                               f"{blob['digest']}"], capture_output=True)
        assert head.returncode == 0, f"tag {ref} points at missing blob {blob['digest']}"
    return True


@pytest.fixture
def registry(tmp_path):
    with RegistryServer(tmp_path, auth="none") as reg:
        yield reg


def test_sigkill_during_save_and_push(bundle_template, tmp_path, runc_root, container_name, registry):
    bundle = make_bundle(bundle_template, tmp_path / "bundle", args=[
        "/bin/workload", "--mem", "256", "--state", "/state", "--interval-ms", "50", "--verify-every", "1000000"])
    start(runc_root, bundle, container_name)
    state = wait_for(bundle / "rootfs", lambda s: s.counter >= 2, timeout=60)
    outcomes = []
    for i, after in enumerate(KILL_AFTER):
        home = tmp_path / f"home-{i}"
        ref = f"{registry.host}/crash/save:{i}"
        _killed(["save", "--runc-root", str(runc_root), container_name, ref], home, after)
        time.sleep(0.5)  # the resume guard acts as soon as ckpt is gone
        whole = _tag_is_whole(registry, ref)
        status = runc_status(runc_root, container_name)
        if not whole:
            assert status == "running", f"killed after {after}s: no checkpoint and the container is {status}"
        outcomes.append("checkpointed" if whole else "running")
        if status == "running":
            state = wait_for(bundle / "rootfs", lambda s, c=state.counter: s.counter > c)
        fsck = json.loads(ckpt("fsck", "--repair", "--json", home=home, check=True).stdout)
        assert fsck["ok"] or fsck["removed_tags"], fsck
        assert json.loads(ckpt("fsck", "--json", home=home, check=True).stdout)["ok"]
        if status != "running":
            break  # it was fully checkpointed and stopped: nothing left to kill
    assert "running" in outcomes, "no kill landed before the tag; make the workload bigger"
    # Whatever happened above, the next run succeeds.
    if runc_status(runc_root, container_name) == "running":
        ckpt("save", "--runc-root", str(runc_root), container_name, f"{registry.host}/crash/save:final",
             home=tmp_path / "home-final", check=True)
        assert _tag_is_whole(registry, f"{registry.host}/crash/save:final")


def test_sigkill_during_pull_and_restore(bundle_template, tmp_path, runc_root, container_name, registry):
    bundle = make_bundle(bundle_template, tmp_path / "bundle", args=[
        "/bin/workload", "--mem", "256", "--state", "/state", "--interval-ms", "50", "--verify-every", "1000000"])
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 2, timeout=60)
    ref = f"{registry.host}/crash/restore:v1"
    ckpt("save", "--runc-root", str(runc_root), container_name, ref, home=tmp_path / "src", check=True)
    target = tmp_path / "target"
    for after in KILL_AFTER[:4]:
        _killed(["restore", "--runc-root", str(runc_root), ref], target, after)
        fsck = json.loads(ckpt("fsck", "--repair", "--json", home=target, check=True).stdout)
        assert json.loads(ckpt("fsck", "--json", home=target, check=True).stdout)["ok"], fsck
        if runc_status(runc_root, container_name) == "running":
            break
    out = ckpt("restore", "--runc-root", str(runc_root), ref, "--if-running-ok", "--json", home=target, check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > before.counter + 2).nonce == before.nonce
