"""A full disk under an `oci:` destination is a StorageError (exit 13) with a hint, not an
internal error, and leaves no tag there."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.sample import ckpt

from checkpointer.errors import StorageError
from checkpointer.format.config import CheckpointConfig
from checkpointer.host import host_info
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest


def _checkpoint_in_store(home: Path, size: int) -> None:
    store = Layout(home / "store", create=True)
    config = CheckpointConfig(engine="runc", runtime="runc", runtime_version="1", criu_version="4.2.1",
                              host=host_info(), container_id="app", container_name="app",
                              created="2026-01-01T00:00:00Z")
    layer = store.put_bytes(os.urandom(size), mt.LAYER_TAR_ZSTD)
    manifest = Manifest(store.put_bytes(config.to_bytes(), mt.CHECKPOINT_CONFIG), (layer,),
                        artifact_type=mt.CHECKPOINT_ARTIFACT)
    store.tag("app:v1", store.put_manifest(manifest))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_push_to_a_layout_on_a_full_disk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _checkpoint_in_store(home, 3 << 20)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ckpt-test", str(small)], check=True)
    try:
        done = ckpt("push", "app:v1", f"oci:{small}/layout:v1", home=home)
        assert done.returncode == StorageError.exit_code, done.stderr
        assert "No space left on device" in done.stderr and "TIP" in done.stderr
        index = small / "layout" / "index.json"
        assert not index.exists() or '"v1"' not in index.read_text()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
