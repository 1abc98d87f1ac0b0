"""AES-256-CTR then HMAC-SHA256 over the ciphertext, blob to blob in chunks of 1 MiB, so that a
layer of any size needs only a few MiB of memory. The counter block starts at the 16-byte nonce
and counts as one 128-bit big-endian integer, as Go's cipher.NewCTR does."""
from __future__ import annotations

import hashlib
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 1 << 20


class Source(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class Discard:
    """A sink that keeps nothing: decrypting into it only checks the HMAC and digest."""

    def write(self, data: bytes) -> int:
        return len(data)


def encrypt(src: Source, dst: Sink, key: bytes, nonce: bytes) -> bytes:
    """Copy src to dst encrypted; returns the HMAC of the ciphertext."""
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    mac = hmac.HMAC(key, hashes.SHA256())
    while chunk := src.read(CHUNK):
        out = ctr.update(chunk)
        mac.update(out)
        dst.write(out)
    tail = ctr.finalize()  # empty for a stream cipher
    mac.update(tail)
    dst.write(tail)
    return mac.finalize()


def decrypt(src: Source, dst: Sink, key: bytes, nonce: bytes, expected_hmac: bytes) -> tuple[bool, str]:
    """Copy src to dst decrypted; returns (whether the ciphertext's HMAC matched, the sha256
    digest of the plaintext). dst must hold what it gets until the caller has checked both."""
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce)).decryptor()
    mac = hmac.HMAC(key, hashes.SHA256())
    plain_hash = hashlib.sha256()
    while chunk := src.read(CHUNK):
        mac.update(chunk)
        out = ctr.update(chunk)
        plain_hash.update(out)
        dst.write(out)
    tail = ctr.finalize()
    plain_hash.update(tail)
    dst.write(tail)
    try:
        mac.verify(expected_hmac)
        authentic = True
    except InvalidSignature:
        authentic = False
    return authentic, "sha256:" + plain_hash.hexdigest()
