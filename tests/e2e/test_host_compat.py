"""Restore refuses a checkpoint this host cannot run, names what is missing, and --force overrides."""
from __future__ import annotations

import json
from pathlib import Path

from support.sample import ckpt, make_bundle, runc_status, start, wait_for

from checkpointer.errors import IncompatibleHost
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest


def _retarget(store: Path, ref: str, new_ref: str, change) -> None:  # noqa: ANN001
    """Store a copy of checkpoint `ref` whose config was edited by `change(config_dict)`."""
    layout = Layout(store)
    manifest = layout.read_manifest(layout.resolve(ref))
    config = json.loads(layout.read_blob(manifest.config))
    change(config)
    new_config = layout.put_bytes(json.dumps(config).encode(), manifest.config.media_type)
    edited = Manifest(config=new_config, layers=manifest.layers, annotations=manifest.annotations,
                      artifact_type=manifest.artifact_type)
    layout.tag(new_ref, layout.put_manifest(edited))


def test_foreign_host_is_refused_and_force_overrides(bundle_template, tmp_path, runc_root, ckpt_home,
                                                     container_name):
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, "orig:v1", home=ckpt_home,
         check=True)
    store = ckpt_home / "store"

    def foreign(config: dict) -> None:
        config["host"]["arch"] = "s390x"
        config["host"]["cpuFlags"] = [*config["host"]["cpuFlags"], "avx512_ckpt_test"]
        config["criu"]["version"] = "99.1"

    _retarget(store, "orig:v1", "foreign:v1", foreign)
    res = ckpt("restore", "--runc-root", str(runc_root), "foreign:v1", "--name", "copy", home=ckpt_home)
    assert res.returncode == IncompatibleHost.exit_code, res.stderr
    for what in ("architecture", "s390x", "avx512_ckpt_test", "CRIU"):
        assert what in res.stderr
    assert "--force" in res.stderr
    assert runc_status(runc_root, "copy") is None
    assert not (ckpt_home / "containers" / "copy").exists()

    # The data really is for this host, so forcing it works: the check is what stopped it before.
    _retarget(store, "orig:v1", "flags:v1", lambda c: c["host"].update(cpuFlags=["avx512_ckpt_test"]))
    refused = ckpt("restore", "--runc-root", str(runc_root), "flags:v1", "--name", "copy", home=ckpt_home)
    assert refused.returncode == IncompatibleHost.exit_code and "avx512_ckpt_test" in refused.stderr
    forced = ckpt("restore", "--runc-root", str(runc_root), "flags:v1", "--name", "copy", "--force", "--json",
                  home=ckpt_home, check=True)
    rootfs = Path(json.loads(forced.stdout)["bundle"]) / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > before.counter).nonce == before.nonce
