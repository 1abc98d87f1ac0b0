"""An encrypted checkpoint through a real registry: only ciphertext leaves the host, no key or the
wrong key restores nothing, the right key restores a container that carries on."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.registry_server import RegistryServer
from support.sample import ckpt, make_bundle, runc_status, start, wait_for

from checkpointer.errors import UsageError


def _rsa_pair(directory: Path, name: str) -> tuple[Path, Path]:
    key, pub = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    return key, pub


def test_encrypted_save_push_and_restore(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    key, pub = _rsa_pair(tmp_path, "owner")
    other_key, _ = _rsa_pair(tmp_path, "stranger")
    with RegistryServer(tmp_path, auth="none") as reg:
        bundle = make_bundle(bundle_template, tmp_path / "bundle")
        start(runc_root, bundle, container_name)
        before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
        ref = f"{reg.host}/secret/{container_name}:v1"
        ckpt("save", "--runc-root", str(runc_root), container_name, ref, "--encrypt-to", str(pub), home=ckpt_home,
             check=True)

        manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", *reg.skopeo_args(), f"docker://{ref}"],
                                             capture_output=True, text=True, check=True).stdout)
        assert manifest["layers"] and all(layer["mediaType"].endswith("+encrypted") for layer in manifest["layers"])
        assert all("org.opencontainers.image.enc.keys.jwe" in layer["annotations"] for layer in manifest["layers"])
        # The plaintext never stays behind in the local store either: no zstd layer or chunk (they
        # start with zstd's magic number), no runtime spec (JSON with "ociVersion") is left. (A
        # checkpoint bound for a registry is packed in memory when there is room: then the store
        # holds nothing of it at all.)
        for blob in (ckpt_home / "store" / "blobs" / "sha256").iterdir():
            data = blob.read_bytes()
            assert not data.startswith(b"\x28\xb5\x2f\xfd"), f"plaintext layer {blob.name} left in the store"
            assert b'"ociVersion"' not in data, f"plaintext runtime spec {blob.name} left in the store"

        target = tmp_path / "target"
        no_key = ckpt("restore", "--runc-root", str(runc_root), ref, "--name", "copy", home=target)
        assert no_key.returncode == UsageError.exit_code and "--decrypt-key" in no_key.stderr
        wrong = ckpt("restore", "--runc-root", str(runc_root), ref, "--name", "copy", "--decrypt-key",
                     str(other_key), home=target)
        assert wrong.returncode != 0 and runc_status(runc_root, "copy") is None
        assert not (target / "containers" / "copy").exists()

        shown = json.loads(ckpt("inspect", ref, "--json", home=target, check=True).stdout)
        assert shown["config"]["container"]["id"] == container_name and shown["processes"] == []

        out = ckpt("restore", "--runc-root", str(runc_root), ref, "--name", "copy", "--decrypt-key", str(key),
                   "--json", home=target, check=True)
        rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
        after = wait_for(rootfs, lambda s: s.counter > before.counter + 2 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce and after.verified == before.checksum
