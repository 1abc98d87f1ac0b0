"""checkpointer.crypt: encrypt a checkpoint to RSA and EC recipients, decrypt it with either key."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from crypt_helpers import MARKER, KeySet, blob_names, ingest_names, isolate

from checkpointer.crypt import (AlreadyEncrypted, decrypt_manifest, encrypt_manifest, is_encrypted,
                                load_private_key, load_public_key)
from checkpointer.crypt import spec
from checkpointer.crypt.keywrap import Unwrapper, unwrap, wrap
from checkpointer.errors import UsageError
from checkpointer.format import roles
from checkpointer.oci import annotations as ann
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest


def recipients(keys: KeySet) -> list:
    return [load_public_key(keys.rsa_pub), load_public_key(f"jwe:{keys.ec_pub}")]


@pytest.mark.parametrize("key", ["rsa_key", "ec_key"])
def test_round_trip_with_each_recipient_key(store: Layout, checkpoint, keys: KeySet, tmp_path: Path,
                                            key: str) -> None:
    desc, plain = checkpoint
    original = store.read_manifest(desc)
    enc_desc = encrypt_manifest(store, desc, recipients(keys))
    assert enc_desc.digest != desc.digest
    assert store.read_manifest(enc_desc) is not None
    assert desc not in [d for _, d in store.refs()]  # nothing tagged

    # Decrypt where no plaintext blob exists, so every byte comes from the ciphertext.
    fresh = isolate(store, enc_desc, tmp_path / "fresh")
    out_desc = decrypt_manifest(fresh, enc_desc, [load_private_key(getattr(keys, key))])
    out = fresh.read_manifest(out_desc)
    assert out == original and out_desc.digest == desc.digest
    for layer in out.layers:
        assert fresh.read_blob(layer) == plain[layer.digest]
    assert ingest_names(fresh) == []


def test_ciphertext_hides_the_plaintext(store: Layout, checkpoint, keys: KeySet) -> None:
    desc, plain = checkpoint
    original = store.read_manifest(desc)
    enc = store.read_manifest(encrypt_manifest(store, desc, recipients(keys)))
    for before, after in zip(original.layers, enc.layers):
        assert MARKER in plain[before.digest]
        data = store.read_blob(after)
        assert MARKER not in data
        assert len(data) == before.size  # CTR: the ciphertext is as long as the plaintext
    assert max(layer.size for layer in enc.layers) > 4 << 20


def test_encrypted_manifest_shape(store: Layout, checkpoint, keys: KeySet) -> None:
    desc, _ = checkpoint
    original = store.read_manifest(desc)
    enc = store.read_manifest(encrypt_manifest(store, desc, recipients(keys)))
    assert is_encrypted(enc) and not is_encrypted(original)
    assert enc.config == original.config  # the config stays in clear (restore checks the host first)
    assert enc.annotations == original.annotations and enc.artifact_type == original.artifact_type
    for before, after in zip(original.layers, enc.layers):
        assert after.media_type == before.media_type + "+encrypted"
        assert {k: v for k, v in after.annotations.items() if not k.startswith(spec.ANNOTATION_PREFIX)} \
            == dict(before.annotations)
        pub = json.loads(base64.b64decode(after.annotations[spec.PUBOPTS]))
        assert pub["cipher"] == "AES_256_CTR_HMAC_SHA256" and len(base64.b64decode(pub["hmac"])) == 32
        jwes = after.annotations[spec.KEYS_JWE].split(",")
        assert len(jwes) == 1
        token = json.loads(base64.b64decode(jwes[0]))
        protected = json.loads(base64.urlsafe_b64decode(token["protected"] + "=="))
        assert protected["enc"] == "A256GCM"
        assert sorted(r["header"]["alg"] for r in token["recipients"]) == ["ECDH-ES+A256KW", "RSA-OAEP"]
    assert len({layer.annotations[spec.KEYS_JWE] for layer in enc.layers}) == len(enc.layers)  # a key per layer


def test_single_recipient(store: Layout, checkpoint, keys: KeySet, tmp_path: Path) -> None:
    desc, plain = checkpoint
    enc_desc = encrypt_manifest(store, desc, [load_public_key(keys.ec_pub)])
    fresh = isolate(store, enc_desc, tmp_path / "fresh")
    candidates = [load_private_key(keys.other_key), load_private_key(keys.ec_key_sec1)]
    out = decrypt_manifest(fresh, enc_desc, candidates)
    assert out.digest == desc.digest


def test_only_chosen_roles(store: Layout, checkpoint, keys: KeySet, tmp_path: Path) -> None:
    desc, _ = checkpoint
    enc_desc = encrypt_manifest(store, desc, recipients(keys), roles=[roles.PAGES, roles.CRIU])
    enc = store.read_manifest(enc_desc)
    encrypted = {layer.annotations[ann.LAYER_ROLE] for layer in enc.layers
                 if spec.is_encrypted_media_type(layer.media_type)}
    assert encrypted == {roles.PAGES, roles.CRIU}
    assert sum(spec.is_encrypted_media_type(layer.media_type) for layer in enc.layers) == 3
    fresh = isolate(store, enc_desc, tmp_path / "fresh")
    assert decrypt_manifest(fresh, enc_desc, [load_private_key(keys.rsa_key)]).digest == desc.digest


def test_plain_manifest_decrypts_to_itself(store: Layout, checkpoint) -> None:
    desc, _ = checkpoint
    before = blob_names(store)
    assert decrypt_manifest(store, desc, []) == desc
    assert blob_names(store) == before


def test_usage_errors(store: Layout, checkpoint, keys: KeySet) -> None:
    desc, _ = checkpoint
    with pytest.raises(UsageError, match="at least one recipient"):
        encrypt_manifest(store, desc, [])
    with pytest.raises(UsageError, match="unknown layer role"):
        encrypt_manifest(store, desc, recipients(keys), roles=["memory"])
    enc_desc = encrypt_manifest(store, desc, recipients(keys))
    with pytest.raises(AlreadyEncrypted) as err:
        encrypt_manifest(store, enc_desc, recipients(keys))
    assert err.value.hint


def test_several_jwes_in_one_annotation(store: Layout, checkpoint, keys: KeySet, tmp_path: Path) -> None:
    """ocicrypt appends a JWE, comma-separated, when recipients are added to an encrypted layer."""
    desc, _ = checkpoint
    rsa = load_private_key(keys.rsa_key)
    enc_desc = encrypt_manifest(store, desc, [rsa.public()])
    enc = store.read_manifest(enc_desc)
    layers = []
    for layer in enc.layers:
        opts = unwrap(layer.annotations[spec.KEYS_JWE], [Unwrapper.of(rsa)], "layer")
        more = wrap(opts or b"", [load_public_key(keys.other_pub)])
        layers.append(layer.with_annotations({spec.KEYS_JWE: more + "," + layer.annotations[spec.KEYS_JWE]}))
    both = store.put_manifest(Manifest(enc.config, tuple(layers), enc.annotations, enc.artifact_type))
    fresh = isolate(store, both, tmp_path / "fresh")
    for key in (keys.rsa_key, keys.other_key):
        assert decrypt_manifest(fresh, both, [load_private_key(key)]).digest == desc.digest


def test_too_many_layers_refused_before_any_work(store: Layout, keys: KeySet) -> None:
    """Wrapped keys take ~1.3 KB a layer: 4,000 layers would pass the registries' 4 MiB limit."""
    config = store.put_bytes(b"{}", "application/vnd.ckpt.checkpoint.config.v1+json")
    layers = tuple(store.put_bytes(b"chunk %d" % i, "application/vnd.ckpt.pages.chunk.v1+zstd",
                                   {ann.LAYER_ROLE: roles.PAGES}) for i in range(4000))
    desc = store.put_manifest(Manifest(config, layers))
    before = blob_names(store)
    with pytest.raises(UsageError, match="registries accept") as err:
        encrypt_manifest(store, desc, [load_public_key(keys.rsa_pub)])
    assert "fewer" in (err.value.hint or "")
    assert blob_names(store) == before
