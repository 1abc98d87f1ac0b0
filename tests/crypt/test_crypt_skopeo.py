"""Interoperability with skopeo (containers/ocicrypt): what ckpt encrypts, skopeo decrypts, and what
skopeo encrypts, ckpt decrypts; with an RSA and an EC P-256 key each way. skopeo 1.9 encrypts
only the OCI layer media types, so the layout it encrypts has its pages as tar+zstd layers and
its spec layer is left in clear (a mixed manifest, which ckpt must decrypt too)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from crypt_helpers import MARKER, KeySet, isolate, make_checkpoint

from checkpointer.crypt import (decrypt_manifest, encrypt_manifest, is_encrypted, load_private_key,
                                load_public_key, spec)
from checkpointer.oci import annotations as ann
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest

TAG = "ckpt"


def skopeo(*args: str) -> None:
    if not shutil.which("skopeo"):
        raise AssertionError("the interop tests need skopeo (scripts/setup.sh --test installs it)")
    run = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"skopeo {' '.join(args)} failed:\n{run.stderr}"


def same_layers(left: Manifest, right: Manifest) -> None:
    assert [(d.media_type, d.digest, d.size, dict(d.annotations)) for d in left.layers] == \
           [(d.media_type, d.digest, d.size, dict(d.annotations)) for d in right.layers]


@pytest.mark.parametrize("key", ["rsa_key", "ec_key"])
def test_skopeo_decrypts_what_ckpt_encrypts(tmp_path: Path, keys: KeySet, key: str) -> None:
    store = Layout(tmp_path / "store", create=True)
    desc, plain = make_checkpoint(store)
    enc_desc = encrypt_manifest(store, desc, [load_public_key(keys.rsa_pub), load_public_key(keys.ec_pub)])
    a = isolate(store, enc_desc, tmp_path / "A")
    a.tag(TAG, enc_desc)

    skopeo("copy", "--decryption-key", str(getattr(keys, key)),
           f"oci:{a.root}:{TAG}", f"oci:{tmp_path / 'B'}:{TAG}")

    b = Layout(tmp_path / "B")
    out = b.read_manifest(b.resolve(TAG))
    original = store.read_manifest(desc)
    same_layers(out, original)
    assert out.config == original.config and dict(out.annotations) == dict(original.annotations)
    for layer in out.layers:
        assert b.read_blob(layer) == plain[layer.digest]


@pytest.mark.parametrize("pub, key", [("rsa_pub", "rsa_key"), ("ec_pub", "ec_key")])
def test_skopeo_decrypts_one_recipient_partly_encrypted(tmp_path: Path, keys: KeySet, pub: str, key: str) -> None:
    """One recipient: the JWE is in flattened JSON serialization; only the pages are encrypted."""
    store = Layout(tmp_path / "store", create=True)
    desc, _ = make_checkpoint(store)
    enc_desc = encrypt_manifest(store, desc, [load_public_key(getattr(keys, pub))], roles=["pages"])
    a = isolate(store, enc_desc, tmp_path / "A")
    a.tag(TAG, enc_desc)
    skopeo("copy", "--decryption-key", str(getattr(keys, key)),
           f"oci:{a.root}:{TAG}", f"oci:{tmp_path / 'B'}:{TAG}")
    b = Layout(tmp_path / "B")
    same_layers(b.read_manifest(b.resolve(TAG)), store.read_manifest(desc))


@pytest.mark.parametrize("key", ["rsa_key", "ec_key", "ec_key_sec1"])
def test_ckpt_decrypts_what_skopeo_encrypts(tmp_path: Path, keys: KeySet, key: str) -> None:
    plain_layout = Layout(tmp_path / "plain", create=True)
    desc, plain = make_checkpoint(plain_layout, pages_media_type=mt.LAYER_TAR_ZSTD)
    plain_layout.tag(TAG, desc)
    original = plain_layout.read_manifest(desc)
    tar_layers = [str(i) for i, d in enumerate(original.layers) if d.media_type == mt.LAYER_TAR_ZSTD]
    assert len(tar_layers) == 4

    skopeo("copy", "--encryption-key", f"jwe:{keys.rsa_pub}", "--encryption-key", f"jwe:{keys.ec_pub}",
           "--encrypt-layer", ",".join(tar_layers),
           f"oci:{plain_layout.root}:{TAG}", f"oci:{tmp_path / 'enc'}:{TAG}")

    enc = Layout(tmp_path / "enc")
    enc_desc = enc.resolve(TAG)
    encrypted = enc.read_manifest(enc_desc)
    assert is_encrypted(encrypted)
    assert [d.media_type.endswith("+encrypted") for d in encrypted.layers] == [True, True, True, True, False]
    assert all(MARKER not in enc.read_blob(d)
               for d in encrypted.layers if spec.is_encrypted_media_type(d.media_type))
    assert encrypted.layers[0].annotations[ann.LAYER_ROLE] == "criu"

    out_desc = decrypt_manifest(enc, enc_desc, [load_private_key(getattr(keys, key))])
    out = enc.read_manifest(out_desc)
    same_layers(out, original)  # skopeo drops artifactType; the layers come back as they were
    for layer in out.layers:
        assert enc.read_blob(layer) == plain[layer.digest]
