"""A disk that fills up while pulling: a clear error, the partial data removed, no tag, nothing restored."""
from __future__ import annotations

import json
import subprocess

from support.registry_server import RegistryServer
from support.sample import ckpt, make_bundle, runc_status, start, wait_for

from checkpointer.errors import StorageError


def test_pull_and_restore_onto_a_full_disk(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    with RegistryServer(tmp_path, auth="none") as reg:
        bundle = make_bundle(bundle_template, tmp_path / "bundle")
        start(runc_root, bundle, container_name)
        wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
        ref = f"{reg.host}/full/{container_name}:v1"
        ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, ref, home=ckpt_home,
             check=True)
        small = tmp_path / "small"
        small.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "ckpt-test", str(small)], check=True)
        try:
            pulled = ckpt("pull", ref, "copy:v1", home=small, env={"CKPT_NO_TMPFS": "1"})
            assert pulled.returncode == StorageError.exit_code, pulled.stderr
            assert "No space left on device" in pulled.stderr and "TIP" in pulled.stderr
            assert json.loads((small / "store" / "index.json").read_text())["manifests"] == []
            assert list((small / "store" / "ingest").iterdir()) == []

            restored = ckpt("restore", "--runc-root", str(runc_root), ref, "--name", "copy", home=small,
                            env={"CKPT_NO_TMPFS": "1"})
            assert restored.returncode == StorageError.exit_code, restored.stderr
            assert runc_status(runc_root, "copy") is None
            assert not (small / "containers" / "copy").exists()
            assert list((small / "store" / "ingest").iterdir()) == []
        finally:
            subprocess.run(["umount", "-l", str(small)], check=False)
