"""Real CRIU + runc: save a running container, wipe it, restore it, prove it carried on."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.sample import ckpt, make_bundle, read_state, runc_status, start, wait_for

from checkpointer.errors import AlreadyExists, CorruptData, CriuFailed, NotFound, StorageError


def _running_sample(bundle_template: Path, tmp_path: Path, runc_root: Path, name: str, **kw) -> Path:
    bundle = make_bundle(bundle_template, tmp_path / "bundle", **kw)
    start(runc_root, bundle, name)
    return bundle


def test_save_wipe_restore_continues(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    bundle = _running_sample(bundle_template, tmp_path, runc_root, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 5)

    saved = ckpt("save", "--runc-root", str(runc_root), container_name, "--json", home=ckpt_home, check=True)
    result = json.loads(saved.stdout)
    assert result["references"] == [f"{container_name}:latest", result["references"][1]]
    assert result["digest"].startswith("sha256:")
    at_save = read_state(bundle / "rootfs")
    assert runc_status(runc_root, container_name) is None  # runc checkpoint stops the container

    shutil.rmtree(bundle)  # nothing of the original container is left on this host
    restored = ckpt("restore", "--runc-root", str(runc_root), f"{container_name}:latest", "--json",
                    home=ckpt_home, check=True)
    info = json.loads(restored.stdout)
    assert info["container"] == container_name
    assert runc_status(runc_root, container_name) == "running"

    rootfs = Path(info["bundle"]) / "rootfs"
    after = wait_for(rootfs, lambda s: s.counter > at_save.counter + 4 and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
    assert after.checksum == before.checksum
    assert after.verified == before.checksum, "memory changed across the checkpoint"


def test_leave_running_and_restore_under_new_name(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    bundle = _running_sample(bundle_template, tmp_path, runc_root, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)

    ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, "snap:v1", home=ckpt_home,
         check=True)
    assert runc_status(runc_root, container_name) == "running"
    wait_for(bundle / "rootfs", lambda s: s.counter > before.counter + 3)

    copy = f"{container_name}-copy"
    out = ckpt("restore", "--runc-root", str(runc_root), "snap:v1", "--name", copy, "--json", home=ckpt_home,
               check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    after = wait_for(rootfs, lambda s: s.counter > before.counter and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce
    assert after.verified == before.checksum
    assert runc_status(runc_root, container_name) == "running" and runc_status(runc_root, copy) == "running"

    again = ckpt("restore", "--runc-root", str(runc_root), "snap:v1", "--name", copy, home=ckpt_home)
    assert again.returncode == AlreadyExists.exit_code
    assert "exists already" in again.stderr
    idempotent = ckpt("restore", "--runc-root", str(runc_root), "snap:v1", "--name", copy, "--if-running-ok",
                      "--json", home=ckpt_home, check=True)
    assert json.loads(idempotent.stdout)["already_running"] is True


def test_save_of_missing_container_is_a_clear_error(runc_root, ckpt_home):
    res = ckpt("save", "--runc-root", str(runc_root), "no-such-container", home=ckpt_home)
    assert res.returncode == NotFound.exit_code
    assert "no runc container 'no-such-container'" in res.stderr
    assert "TIP" in res.stderr
    assert ckpt("ls", "--json", home=ckpt_home, check=True).stdout.strip() == "[]"


def test_criu_refusal_leaves_container_running(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    # The workload holds a file lock: CRIU refuses to dump it unless --file-locks is given.
    args = ["/bin/workload", "--mem", "4", "--state", "/state", "--interval-ms", "50", "--lock", "/lockfile"]
    bundle = _running_sample(bundle_template, tmp_path, runc_root, container_name, args=args)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)

    res = ckpt("save", "--runc-root", str(runc_root), container_name, home=ckpt_home)
    assert res.returncode == CriuFailed.exit_code, res.stderr
    assert "CRIU log" in res.stderr and "Error" in res.stderr
    assert "lock" in res.stderr.lower()
    assert runc_status(runc_root, container_name) == "running"
    after = wait_for(bundle / "rootfs", lambda s: s.counter > before.counter + 3)
    assert after.nonce == before.nonce
    assert ckpt("ls", "--json", home=ckpt_home, check=True).stdout.strip() == "[]"

    ok = ckpt("save", "--runc-root", str(runc_root), "--file-locks", container_name, home=ckpt_home)
    assert ok.returncode == 0, ok.stderr
    restored = ckpt("restore", "--runc-root", str(runc_root), container_name, "--json", home=ckpt_home, check=True)
    rootfs = Path(json.loads(restored.stdout)["bundle"]) / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > after.counter).nonce == before.nonce


@pytest.mark.parametrize("size,env", [
    ("3m", {}),  # CRIU's images go to /dev/shm; the packed layers do not fit the store
    ("19m", {"CKPT_NO_TMPFS": "1"}),  # the images fit next to the store, the layers no longer do
])
def test_disk_full_after_dump_puts_container_back(bundle_template, tmp_path, runc_root, container_name, size, env):
    home = tmp_path / "small"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "ckpt-test", str(home)], check=True)
    try:
        bundle = _running_sample(bundle_template, tmp_path, runc_root, container_name)
        before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
        res = ckpt("save", "--runc-root", str(runc_root), container_name, home=home, env=env)
        assert res.returncode == StorageError.exit_code, res.stderr
        assert "No space left on device" in res.stderr
        assert runc_status(runc_root, container_name) == "running"
        after = wait_for(bundle / "rootfs", lambda s: s.counter > before.counter + 3)
        assert after.nonce == before.nonce
        index = json.loads((home / "store" / "index.json").read_text())
        assert index["manifests"] == []
        assert not (home / "tmp").exists() or list((home / "tmp").iterdir()) == []
        assert list((home / "store" / "ingest").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_corrupt_blob_restores_nothing(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    _running_sample(bundle_template, tmp_path, runc_root, container_name)
    out = ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, "victim", "--json",
               home=ckpt_home, check=True)
    digest = json.loads(out.stdout)["digest"]
    manifest = json.loads((ckpt_home / "store" / "blobs" / "sha256" / digest[7:]).read_bytes())
    pages = next(layer for layer in manifest["layers"] if layer["annotations"]["dev.ckpt.layer.role"] == "pages")
    blob = ckpt_home / "store" / "blobs" / "sha256" / pages["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    res = ckpt("restore", "--runc-root", str(runc_root), "victim", "--name", "victim-copy", home=ckpt_home)
    assert res.returncode == CorruptData.exit_code, res.stderr
    assert runc_status(runc_root, "victim-copy") is None
    assert not (ckpt_home / "containers" / "victim-copy").exists()


def test_inspect_decodes_the_process_tree(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    _running_sample(bundle_template, tmp_path, runc_root, container_name)
    ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, home=ckpt_home, check=True)
    view = json.loads(ckpt("inspect", container_name, "--json", home=ckpt_home, check=True).stdout)
    assert view["config"]["container"]["id"] == container_name
    assert view["config"]["engine"] == "runc"
    assert view["config"]["criu"]["version"].startswith("4.")
    [proc] = view["processes"]
    assert proc["command"].startswith("/bin/workload --mem 16")
    assert proc["memory"] >= 16 << 20
    assert {layer["role"] for layer in view["layers"]} == {"criu", "pages", "rootfs", "spec"}

    text = ckpt("inspect", container_name, home=ckpt_home, check=True).stdout
    assert "/bin/workload" in text and "pages" in text

    # Any OCI tool reads the store: skopeo sees the artifact as ckpt wrote it.
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{ckpt_home}/store:{container_name}:latest"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(raw)["artifactType"] == "application/vnd.ckpt.checkpoint.v1"

    removed = ckpt("rm", f"{container_name}:latest", "--json", home=ckpt_home, check=True)
    assert json.loads(removed.stdout)["freed"] == 0  # the timestamp tag still holds the same data
    assert len(json.loads(ckpt("ls", "--json", home=ckpt_home, check=True).stdout)) == 1


@pytest.mark.parametrize("kind", ["oci-layout", "archive"])
def test_save_to_a_layout_or_an_archive_and_restore_from_it(kind, bundle_template, tmp_path, runc_root, ckpt_home,
                                                            container_name):
    """Bound elsewhere than the store, a checkpoint is packed beside its images (tmpfs) and then
    written to the destination: it must arrive whole, and the store must hold nothing of it."""
    bundle = _running_sample(bundle_template, tmp_path, runc_root, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    dest = f"oci:{tmp_path / 'layout'}:v1" if kind == "oci-layout" else str(tmp_path / "checkpoint.tar.zst")

    ckpt("save", "--runc-root", str(runc_root), container_name, dest, home=ckpt_home, check=True)
    assert runc_status(runc_root, container_name) is None
    store_blobs = ckpt_home / "store" / "blobs" / "sha256"
    assert not store_blobs.exists() or not any(store_blobs.iterdir()), "the store kept a copy"
    shutil.rmtree(bundle)

    out = ckpt("restore", "--runc-root", str(runc_root), dest, "--json", home=ckpt_home, check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    after = wait_for(rootfs, lambda s: s.counter > before.counter + 2 and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce and after.verified == before.checksum
