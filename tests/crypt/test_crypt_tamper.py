"""checkpointer.crypt: a wrong or missing key, damaged or forged ciphertext, options or wrapped keys
all fail with a clear error, and leave no plaintext blob (nor a partial one) in the layout."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable

import pytest
from crypt_helpers import KeySet, blob_names, ingest_names, isolate, replace_layer

from checkpointer.crypt import (KeyRequired, TamperedLayer, UnsupportedEncryption, WrongKey, decrypt_manifest,
                                encrypt_manifest, load_private_key, load_public_key, spec)
from checkpointer.crypt.keys import PrivateKey
from checkpointer.crypt.keywrap import Unwrapper, unwrap, wrap
from checkpointer.crypt.options import PrivateOptions
from checkpointer.errors import CkptError, CorruptData, UsageError
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor

LAYERS = (0, 1, 4)  # the first, the multi-MiB pages chunk, the last


@pytest.fixture
def encrypted(store: Layout, checkpoint, keys: KeySet,
              tmp_path: Path) -> tuple[Layout, Descriptor, dict[str, bytes]]:
    """The checkpoint encrypted to the RSA and EC keys, alone in a fresh layout."""
    desc, plain = checkpoint
    enc_desc = encrypt_manifest(store, desc, [load_public_key(keys.rsa_pub), load_public_key(keys.ec_pub)])
    return isolate(store, enc_desc, tmp_path / "encrypted"), enc_desc, plain


def expect_failure(layout: Layout, desc: Descriptor, key_list: list[PrivateKey], plain: dict[str, bytes],
                   error: type[CkptError], match: str | None = None) -> CkptError:
    before = blob_names(layout)
    with pytest.raises(error, match=match) as info:
        decrypt_manifest(layout, desc, key_list)
    assert blob_names(layout) == before, "a failed decryption committed blobs"
    assert not any(layout.has_blob(digest) for digest in plain)
    assert ingest_names(layout) == []
    return info.value


def test_wrong_key(encrypted, keys: KeySet) -> None:
    layout, desc, plain = encrypted
    err = expect_failure(layout, desc, [load_private_key(keys.other_key)], plain, WrongKey, "none of the keys")
    assert isinstance(err, UsageError) and str(keys.other_key) in str(err)
    assert "recipients" in (err.hint or "")


def test_missing_key(encrypted) -> None:
    layout, desc, plain = encrypted
    err = expect_failure(layout, desc, [], plain, KeyRequired, "encrypted")
    assert isinstance(err, UsageError) and "--decrypt-key" in (err.hint or "")


@pytest.mark.parametrize("index", LAYERS)
def test_flipped_byte_in_place(encrypted, keys: KeySet, index: int) -> None:
    layout, desc, plain = encrypted
    layer = layout.read_manifest(desc).layers[index]
    _rewrite(layout.blob_path(layer.digest), lambda data: _flip(data, len(data) // 2))
    expect_failure(layout, desc, [load_private_key(keys.rsa_key)], plain, CorruptData, "digest mismatch")


@pytest.mark.parametrize("index", LAYERS)
def test_flipped_byte_with_matching_digest_fails_the_hmac(encrypted, keys: KeySet, index: int) -> None:
    """A forger who also fixes the manifest's digest and size still cannot pass the HMAC."""
    layout, desc, plain = encrypted
    forged = _forge_blob(layout, desc, index, lambda data: _flip(data, len(data) - 1))
    expect_failure(layout, forged, [load_private_key(keys.ec_key)], plain, TamperedLayer, "authentication")


def test_truncated_ciphertext_in_place(encrypted, keys: KeySet) -> None:
    layout, desc, plain = encrypted
    layer = layout.read_manifest(desc).layers[1]
    _rewrite(layout.blob_path(layer.digest), lambda data: data[: len(data) - 4096])
    expect_failure(layout, desc, [load_private_key(keys.rsa_key)], plain, CorruptData, "truncated")


@pytest.mark.parametrize("index", LAYERS)
def test_truncated_ciphertext_with_matching_digest(encrypted, keys: KeySet, index: int) -> None:
    layout, desc, plain = encrypted
    forged = _forge_blob(layout, desc, index, lambda data: data[: len(data) // 2])
    expect_failure(layout, forged, [load_private_key(keys.rsa_key)], plain, TamperedLayer, "authentication")


def _pubopts(hmac: bytes | None = None, cipher: str = spec.CIPHER, raw: str | None = None) -> str:
    if raw is not None:
        return raw
    doc = {"cipher": cipher, "hmac": base64.b64encode(hmac or bytes(32)).decode(), "cipheroptions": {}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize("value, error, match", [
    (_pubopts(hmac=b"\x01" * 32), TamperedLayer, "authentication"),
    (_pubopts(hmac=b"\x01" * 16), TamperedLayer, "16 bytes"),
    (_pubopts(cipher="AES_128_GCM"), UnsupportedEncryption, "cipher"),
    (_pubopts(raw="not base64!"), TamperedLayer, "base64"),
    (_pubopts(raw=base64.b64encode(b"[1,2]").decode()), TamperedLayer, "JSON object"),
    (_pubopts(raw=""), TamperedLayer, "pubopts"),
])
@pytest.mark.parametrize("index", (1, 4))
def test_tampered_pubopts(encrypted, keys: KeySet, value: str, error: type[CkptError], match: str,
                          index: int) -> None:
    layout, desc, plain = encrypted
    forged = _forge_annotations(layout, desc, index, {spec.PUBOPTS: value})
    expect_failure(layout, forged, [load_private_key(keys.rsa_key)], plain, error, match)


def test_wrapped_keys_swapped_between_layers(encrypted, keys: KeySet) -> None:
    layout, desc, plain = encrypted
    layers = layout.read_manifest(desc).layers
    forged = _forge_annotations(layout, desc, 4, {spec.KEYS_JWE: layers[0].annotations[spec.KEYS_JWE]})
    expect_failure(layout, forged, [load_private_key(keys.rsa_key)], plain, TamperedLayer, "authentication")


def test_damaged_wrapped_key(encrypted, keys: KeySet) -> None:
    layout, desc, plain = encrypted
    token = json.loads(base64.b64decode(layout.read_manifest(desc).layers[1].annotations[spec.KEYS_JWE]))
    ciphertext = bytearray(base64.urlsafe_b64decode(token["ciphertext"] + "=="))
    ciphertext[0] ^= 1
    token["ciphertext"] = base64.urlsafe_b64encode(bytes(ciphertext)).rstrip(b"=").decode()
    damaged = base64.b64encode(json.dumps(token).encode()).decode()
    forged = _forge_annotations(layout, desc, 1, {spec.KEYS_JWE: damaged})
    expect_failure(layout, forged, [load_private_key(keys.rsa_key)], plain, WrongKey)
    garbled = _forge_annotations(layout, desc, 1, {spec.KEYS_JWE: base64.b64encode(b"{nope").decode()})
    expect_failure(layout, garbled, [load_private_key(keys.rsa_key)], plain, TamperedLayer, "not a valid JWE")


def test_recorded_digest_must_match_the_plaintext(encrypted, keys: KeySet) -> None:
    """Private options re-wrapped by someone who holds a recipient key but lies about the digest."""
    layout, desc, plain = encrypted
    layer = layout.read_manifest(desc).layers[4]
    rsa = load_private_key(keys.rsa_key)
    wrapped = unwrap(layer.annotations[spec.KEYS_JWE], [Unwrapper.of(rsa)], "x")
    opts = PrivateOptions.from_bytes(wrapped or b"", "x")
    lying = PrivateOptions(opts.symkey, opts.nonce, "sha256:" + "0" * 64)
    forged = _forge_annotations(layout, desc, 4, {spec.KEYS_JWE: wrap(lying.to_bytes(), [rsa.public()])})
    expect_failure(layout, forged, [rsa], plain, TamperedLayer, "decrypts to sha256:")


def test_other_key_schemes_are_named(encrypted, keys: KeySet) -> None:
    layout, desc, plain = encrypted
    layer = layout.read_manifest(desc).layers[0]
    annotations = {k: v for k, v in layer.annotations.items() if k != spec.KEYS_JWE}
    annotations[spec.KEYS_PREFIX + "pgp"] = "AAAA"
    forged = replace_layer(layout, desc, 0, Descriptor(layer.media_type, layer.digest, layer.size, annotations))
    err = expect_failure(layout, forged, [load_private_key(keys.rsa_key)], plain, UnsupportedEncryption, "pgp")
    assert "skopeo" in (err.hint or "")


# -- forging helpers -----------------------------------------------------------------------------

def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    data = change(path.read_bytes())
    path.chmod(0o644)
    path.write_bytes(data)


def _forge_blob(layout: Layout, desc: Descriptor, index: int, change: Callable[[bytes], bytes]) -> Descriptor:
    layer = layout.read_manifest(desc).layers[index]
    forged = layout.put_bytes(change(layout.read_blob(layer)), layer.media_type, dict(layer.annotations))
    return replace_layer(layout, desc, index, forged)


def _forge_annotations(layout: Layout, desc: Descriptor, index: int, changes: dict[str, str]) -> Descriptor:
    layer = layout.read_manifest(desc).layers[index]
    annotations = {**layer.annotations, **changes}
    return replace_layer(layout, desc, index, Descriptor(layer.media_type, layer.digest, layer.size, annotations))
