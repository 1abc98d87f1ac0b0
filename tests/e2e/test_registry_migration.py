"""Real CRIU + runc + a real registry: save to a registry, wipe everything, restore from the ref alone."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.registry_server import RegistryServer, free_port
from support.sample import ckpt, make_bundle, read_state, runc_status, start, wait_for

from checkpointer.errors import AuthError, Unreachable


@pytest.fixture
def docker_config(tmp_path: Path) -> dict:
    return {"DOCKER_CONFIG": str(tmp_path / "docker-config")}


def test_migrate_through_token_auth_tls_registry(bundle_template, tmp_path, runc_root, ckpt_home, container_name,
                                                 docker_config):
    with RegistryServer(tmp_path, auth="token") as reg:
        tls = ["--ca-dir", str(reg.cert_dir)]
        ckpt("login", reg.host, "-u", reg.username, "--password-stdin", *tls, home=ckpt_home, env=docker_config,
             input=reg.password + "\n", check=True)
        bundle = make_bundle(bundle_template, tmp_path / "bundle")
        start(runc_root, bundle, container_name)
        before = wait_for(bundle / "rootfs", lambda s: s.counter >= 5)

        ref = f"{reg.host}/migrations/{container_name}:v1"
        saved = json.loads(ckpt("save", "--runc-root", str(runc_root), container_name, ref, *tls, "--json",
                                home=ckpt_home, env=docker_config, check=True).stdout)
        assert saved["references"] == [ref]
        at_save = read_state(bundle / "rootfs")

        # An independent client sees a valid OCI artifact with the checkpoint artifactType.
        raw = subprocess.run(["skopeo", "inspect", "--raw", *reg.skopeo_args(), f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        manifest = json.loads(raw)
        assert manifest["artifactType"] == "application/vnd.ckpt.checkpoint.v1"
        assert {layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]} == {
            "criu", "pages", "rootfs", "spec"}

        # Wipe every trace on this host: container (gone after checkpoint), bundle, local store.
        assert runc_status(runc_root, container_name) is None
        shutil.rmtree(bundle)
        shutil.rmtree(ckpt_home)
        ckpt_home.mkdir()

        out = ckpt("restore", "--runc-root", str(runc_root), ref, *tls, "--json", home=ckpt_home,
                   env=docker_config, check=True)
        info = json.loads(out.stdout)
        assert info["digest"] == saved["digest"]
        after = wait_for(Path(info["bundle"]) / "rootfs",
                         lambda s: s.counter > at_save.counter + 4 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce
        assert after.verified == before.checksum


def test_wrong_password_is_an_auth_error(tmp_path, ckpt_home, docker_config):
    with RegistryServer(tmp_path, auth="htpasswd") as reg:
        res = ckpt("login", reg.host, "-u", reg.username, "--password-stdin", home=ckpt_home, env=docker_config,
                   input="not-the-password\n")
        assert res.returncode == AuthError.exit_code, res.stderr
        assert "not-the-password" not in res.stdout + res.stderr
        assert not (tmp_path / "docker-config" / "config.json").exists()


def test_unreachable_registry_is_found_before_the_dump(bundle_template, tmp_path, runc_root, ckpt_home,
                                                      container_name):
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    res = ckpt("save", "--runc-root", str(runc_root), container_name, f"{dead}/x/y:v1", home=ckpt_home)
    assert res.returncode == Unreachable.exit_code, res.stderr
    assert runc_status(runc_root, container_name) == "running"
    after = wait_for(bundle / "rootfs", lambda s: s.counter > before.counter + 3)
    assert after.nonce == before.nonce
