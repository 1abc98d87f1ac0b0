"""Wrapping a layer's private options for its recipients, as ocicrypt's `jwe` key wrapper does: one
JWE (JSON serialization, content encryption A256GCM) with one recipient per public key, RSA-OAEP
for RSA keys and ECDH-ES+A256KW for EC keys. The annotation holds the JWE in base64; other tools
may have appended more JWEs, comma-separated."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

from . import spec
from .errors import TamperedLayer
from .keys import PrivateKey, PublicKey

MAX_JWES = 64  # per annotation: more is a hostile manifest, not a real one


@dataclass(frozen=True, slots=True, eq=False)
class Unwrapper:
    """A private key with its JWK made once, for the many layers of one manifest."""

    key: PrivateKey
    jwk: jwk.JWK

    @classmethod
    def of(cls, key: PrivateKey) -> Unwrapper:
        return cls(key, key.jwk())


def wrap(plaintext: bytes, recipients: Sequence[PublicKey]) -> str:
    """The value of the enc.keys.jwe annotation for `plaintext` (the private options)."""
    token = jwe.JWE(plaintext, protected=json.dumps({"enc": spec.JWE_CONTENT_ALG}))
    for recipient in recipients:
        token.add_recipient(recipient.jwk(), header=json.dumps({"alg": recipient.jwe_alg}))
    return base64.b64encode(token.serialize().encode()).decode("ascii")


def unwrap(annotation: str, keys: Sequence[Unwrapper], what: str) -> bytes | None:
    """The private options, or None when no key opens any of the JWEs. Raises TamperedLayer when
    the annotation is not well-formed JWEs."""
    parts = annotation.split(",")
    if len(parts) > MAX_JWES:
        raise TamperedLayer(f"{what}: {len(parts)} wrapped keys, more than the {MAX_JWES} allowed")
    tokens = [_parse(part, what) for part in parts]
    for token in tokens:
        for key in keys:
            try:
                token.decrypt(key.jwk)
            except (JWException, ValueError, TypeError, KeyError):  # hostile headers can raise the others
                continue
            payload = token.payload
            if isinstance(payload, bytes):
                return payload
    return None


def overhead(recipients: Sequence[PublicKey]) -> int:
    """About how many bytes of annotations encrypting one layer to `recipients` adds."""
    sample = json.dumps({"symkey": "A" * 44, "digest": "sha256:" + "0" * 64, "cipheroptions": {"nonce": "A" * 24}})
    return len(wrap(sample.encode(), recipients)) + len(spec.KEYS_JWE) + len(spec.PUBOPTS) + 200


def algorithms(annotation: str) -> list[str]:
    """The key management algorithms the recipients of the annotation's JWEs use, for messages."""
    found: list[str] = []
    for part in annotation.split(",")[:MAX_JWES]:
        try:
            obj = json.loads(base64.b64decode(part, validate=True))
        except (ValueError, binascii.Error, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        recipients = obj.get("recipients") if isinstance(obj.get("recipients"), list) else [obj]
        for recipient in recipients:
            header = recipient.get("header") if isinstance(recipient, dict) else None
            alg = header.get("alg") if isinstance(header, dict) else None
            if isinstance(alg, str) and alg not in found:
                found.append(alg)
    return found


def _parse(part: str, what: str) -> jwe.JWE:
    try:
        raw = base64.b64decode(part, validate=True).decode()
    except (ValueError, binascii.Error):
        raise TamperedLayer(f"{what}: a wrapped key in {spec.KEYS_JWE} is not valid base64") from None
    token = jwe.JWE(algs=[*spec.JWE_KEY_ALGS, *spec.JWE_CONTENT_ALGS])
    try:
        token.deserialize(raw)
    except (JWException, ValueError, TypeError, KeyError, RecursionError):
        raise TamperedLayer(f"{what}: a wrapped key in {spec.KEYS_JWE} is not a valid JWE") from None
    return token
