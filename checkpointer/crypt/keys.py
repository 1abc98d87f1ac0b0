"""Recipients' public keys and the private keys that decrypt: PEM files, RSA or EC (P-256, P-384,
P-521), as ocicrypt's JWE scheme takes them. A recipient may be written `jwe:PATH` as for skopeo."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk

from .errors import KeyFileError

MIN_RSA_BITS = 2048
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MAX_KEY_FILE_BYTES = 1 << 20
JWE_SCHEME = "jwe:"
OTHER_SCHEMES = ("pgp:", "pkcs7:", "pkcs11:", "provider:")

PublicKeyObject = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKeyObject = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True, eq=False)
class PublicKey:
    """A recipient: whoever holds the matching private key can decrypt."""

    key: PublicKeyObject
    source: str  # where it came from, for messages

    @property
    def kind(self) -> str:
        return _kind(self.key)

    @property
    def jwe_alg(self) -> str:
        """The JWE key management algorithm ocicrypt uses for this kind of key."""
        return "RSA-OAEP" if isinstance(self.key, rsa.RSAPublicKey) else "ECDH-ES+A256KW"

    def jwk(self) -> jwk.JWK:
        return jwk.JWK.from_pyca(self.key)

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint, a short name for the key."""
        return self.jwk().thumbprint()


@dataclass(frozen=True, slots=True, eq=False)
class PrivateKey:
    key: PrivateKeyObject
    source: str

    @property
    def kind(self) -> str:
        return _kind(self.key)

    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.source)

    def jwk(self) -> jwk.JWK:
        return jwk.JWK.from_pyca(self.key)


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """A recipient's PEM public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 `RSA PUBLIC KEY`)."""
    name = os.fspath(path)
    if name.startswith(JWE_SCHEME):
        name = name[len(JWE_SCHEME):]
    elif name.startswith(OTHER_SCHEMES) and not Path(name).exists():
        raise KeyFileError(f"{name}: only jwe recipients are supported",
                           hint="give a PEM public key, as PATH or jwe:PATH")
    data = _read(name)
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(f"{name} is a private key; encryption needs the recipient's public key",
                           hint=f"openssl pkey -in {name} -pubout -out {name}.pub")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{name} is not a PEM public key",
                           hint="make one with: openssl pkey -in key.pem -pubout -out key.pub") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise KeyFileError(f"{name}: {type(key).__name__} keys are not supported", hint=_SUPPORTED)
    _check_kind(key, name)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"{name}: an RSA key of {key.key_size} bits is too weak to encrypt to",
                           hint=f"use at least {MIN_RSA_BITS} bits")
    return PublicKey(key, name)


def load_private_key(path: str | os.PathLike[str], passphrase: str | bytes | None = None) -> PrivateKey:
    """A PEM private key (PKCS#8, PKCS#1 or SEC1), encrypted with `passphrase` or not."""
    name = os.fspath(path)
    data = _read(name)
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key = serialization.load_pem_private_key(data, password=password or None)
    except TypeError:
        if not password:  # encrypted, and no passphrase given
            raise KeyFileError(f"{name} is encrypted with a passphrase", hint="give its passphrase") from None
        key = serialization.load_pem_private_key(data, password=None)  # a passphrase it does not need
    except (ValueError, UnsupportedAlgorithm):
        if b"ENCRYPTED" in data and password:
            raise KeyFileError(f"{name}: wrong passphrase") from None
        raise KeyFileError(f"{name} is not a PEM private key", hint=_SUPPORTED) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyFileError(f"{name}: {type(key).__name__} keys are not supported", hint=_SUPPORTED)
    _check_kind(key, name)
    return PrivateKey(key, name)


_SUPPORTED = "use an RSA (2048 bits or more) or EC P-256/P-384/P-521 key in PEM"


def _read(name: str) -> bytes:
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"key file {name} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{name} is too large to be a key file")
    return data


def _kind(key: PublicKeyObject | PrivateKeyObject) -> str:
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"RSA-{key.key_size}"
    return f"EC {CURVES.get(key.curve.name, key.curve.name)}"


def _check_kind(key: PublicKeyObject | PrivateKeyObject, name: str) -> None:
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and key.curve.name not in CURVES:
        raise KeyFileError(f"{name}: the EC curve {key.curve.name} is not supported", hint=_SUPPORTED)
