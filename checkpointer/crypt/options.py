"""The two JSON documents of an ocicrypt layer, in ocicrypt's encoding (Go's encoding/json: byte
strings as padded standard base64).

- Private options, the plaintext every recipient's JWE wraps: the symmetric key, the nonce and the
  digest of the plaintext layer. `{"symkey": B64, "digest": "sha256:...", "cipheroptions": {"nonce": B64}}`
- Public options, base64 in the `pubopts` annotation: the cipher and the HMAC of the ciphertext.
  `{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": B64, "cipheroptions": {}}`
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorruptData
from ..oci.digest import check_digest
from . import spec
from .errors import TamperedLayer, UnsupportedEncryption

MAX_OPTIONS_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class PrivateOptions:
    symkey: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    digest: str  # of the plaintext layer

    def to_bytes(self) -> bytes:
        return _compact({"symkey": _b64(self.symkey), "digest": self.digest,
                         "cipheroptions": {"nonce": _b64(self.nonce)}})

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> PrivateOptions:
        obj = _object(data, f"{what}: the private options")
        opts = obj.get("cipheroptions")
        if not isinstance(opts, dict):
            raise TamperedLayer(f"{what}: the private options have no cipher options")
        symkey = _bytes(obj.get("symkey"), f"{what}: symkey", spec.KEY_BYTES)
        nonce = _bytes(opts.get("nonce"), f"{what}: nonce", spec.NONCE_BYTES)
        digest = obj.get("digest")
        if not digest:
            raise TamperedLayer(f"{what}: the private options do not record the plaintext digest")
        try:
            check_digest(digest)
        except CorruptData:
            raise TamperedLayer(f"{what}: the private options record an invalid digest "
                                f"{str(digest)[:80]!r}") from None
        return cls(symkey, nonce, digest)


@dataclass(frozen=True, slots=True)
class PublicOptions:
    cipher: str
    hmac: bytes

    def to_annotation(self) -> str:
        doc = {"cipher": self.cipher, "hmac": _b64(self.hmac), "cipheroptions": {}}
        return _b64(_compact(doc))

    @classmethod
    def from_annotation(cls, value: str | None, what: str) -> PublicOptions:
        if not value:
            raise TamperedLayer(f"{what} has no {spec.PUBOPTS} annotation")
        if len(value) > MAX_OPTIONS_BYTES:
            raise TamperedLayer(f"{what}: the {spec.PUBOPTS} annotation is too large")
        obj = _object(_unb64(value, f"{what}: {spec.PUBOPTS}"), f"{what}: {spec.PUBOPTS}")
        cipher = obj.get("cipher")
        if cipher != spec.CIPHER:
            raise UnsupportedEncryption(f"{what} is encrypted with the cipher {str(cipher)[:80]!r}",
                                        hint=f"ckpt only implements {spec.CIPHER}")
        return cls(cipher, _bytes(obj.get("hmac"), f"{what}: hmac", spec.HMAC_BYTES))


def _compact(doc: dict[str, Any]) -> bytes:
    """JSON as Go's encoding/json writes it: no spaces, fields in declaration order."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TamperedLayer(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TamperedLayer(f"{what} is not valid base64") from None


def _bytes(value: Any, what: str, size: int) -> bytes:
    data = _unb64(value, what)
    if len(data) != size:
        raise TamperedLayer(f"{what} has {len(data)} bytes, not {size}")
    return data


def _object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_OPTIONS_BYTES:
        raise TamperedLayer(f"{what} are too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise TamperedLayer(f"{what} are not valid JSON") from None
    if not isinstance(obj, dict):
        raise TamperedLayer(f"{what} are not a JSON object")
    return obj
