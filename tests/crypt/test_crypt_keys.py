"""checkpointer.crypt.keys: loading recipients' public keys and private keys (PEM, RSA and EC)."""
from __future__ import annotations

from pathlib import Path

import pytest
from crypt_helpers import KeySet, openssl

from checkpointer.crypt import KeyFileError, load_private_key, load_public_key
from checkpointer.errors import UsageError


def test_public_keys(keys: KeySet) -> None:
    rsa = load_public_key(keys.rsa_pub)
    assert rsa.kind == "RSA-2048" and rsa.jwe_alg == "RSA-OAEP" and rsa.source == str(keys.rsa_pub)
    ec = load_public_key(f"jwe:{keys.ec_pub}")  # skopeo's spelling of a recipient
    assert ec.kind == "EC P-256" and ec.jwe_alg == "ECDH-ES+A256KW" and ec.source == str(keys.ec_pub)
    assert len(rsa.thumbprint) == 43 and rsa.thumbprint != ec.thumbprint


def test_private_keys_match_their_public_keys(keys: KeySet) -> None:
    for private, public in ((keys.rsa_key, keys.rsa_pub), (keys.ec_key, keys.ec_pub),
                            (keys.ec_key_sec1, keys.ec_pub)):
        assert load_private_key(private).public().thumbprint == load_public_key(public).thumbprint


def test_pkcs1_rsa_public_key(keys: KeySet, tmp_path: Path) -> None:
    pkcs1 = tmp_path / "rsa-pkcs1.pub"
    openssl("rsa", "-in", str(keys.rsa_key), "-RSAPublicKey_out", "-out", str(pkcs1))
    assert pkcs1.read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert load_public_key(pkcs1).thumbprint == load_public_key(keys.rsa_pub).thumbprint


def test_passphrase(keys: KeySet, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    openssl("pkey", "-in", str(keys.rsa_key), "-aes256", "-passout", "pass:s3cret", "-out", str(locked))
    assert "ENCRYPTED" in locked.read_text()
    assert load_private_key(locked, "s3cret").kind == "RSA-2048"
    assert load_private_key(locked, b"s3cret").kind == "RSA-2048"
    with pytest.raises(KeyFileError, match="passphrase") as err:
        load_private_key(locked)
    assert err.value.hint
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(locked, "nope")
    assert load_private_key(keys.rsa_key, "unneeded").kind == "RSA-2048"


def test_refused_keys(keys: KeySet, tmp_path: Path) -> None:
    weak = tmp_path / "weak.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", str(weak))
    openssl("pkey", "-in", str(weak), "-pubout", "-out", str(tmp_path / "weak.pub"))
    ed = tmp_path / "ed.pem"
    openssl("genpkey", "-algorithm", "ED25519", "-out", str(ed))
    openssl("pkey", "-in", str(ed), "-pubout", "-out", str(tmp_path / "ed.pub"))
    k1 = tmp_path / "k1.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-out", str(k1))
    openssl("pkey", "-in", str(k1), "-pubout", "-out", str(tmp_path / "k1.pub"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    cases = [
        (lambda: load_public_key(tmp_path / "weak.pub"), "too weak"),
        (lambda: load_public_key(tmp_path / "ed.pub"), "not supported"),
        (lambda: load_private_key(ed), "not supported"),
        (lambda: load_public_key(tmp_path / "k1.pub"), "secp256k1"),
        (lambda: load_public_key(keys.rsa_key), "private key"),
        (lambda: load_public_key(garbage), "not a PEM public key"),
        (lambda: load_private_key(garbage), "not a PEM private key"),
        (lambda: load_private_key(keys.rsa_pub), "not a PEM private key"),
        (lambda: load_public_key(tmp_path / "absent.pub"), "does not exist"),
        (lambda: load_private_key(tmp_path), "cannot read"),
        (lambda: load_public_key("pgp:someone@example.com"), "only jwe"),
        (lambda: load_public_key("provider:kms:key1"), "only jwe"),
    ]
    for load, message in cases:
        with pytest.raises(KeyFileError, match=message) as err:
            load()
        assert isinstance(err.value, UsageError)
