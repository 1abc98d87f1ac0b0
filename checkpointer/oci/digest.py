"""sha256 digests, and a reader that refuses to hand out the end of a blob whose digest is wrong."""
from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from ..errors import CorruptData

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # always fullmatch: `$` would let a trailing newline in


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest (the only algorithm ckpt writes)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise CorruptData(f"not a sha256 digest: {str(digest)[:80]!r}")
    return digest


def hex_of(digest: str) -> str:
    return check_digest(digest).split(":", 1)[1]


def verify_bytes(data: bytes, digest: str, size: int | None = None, *, what: str = "blob") -> bytes:
    if size is not None and len(data) != size:
        raise CorruptData(f"{what} {digest} has {len(data)} bytes, expected {size}")
    actual = sha256_digest(data)
    if actual != digest:
        raise CorruptData(f"{what} digest mismatch: expected {digest}, got {actual}")
    return data


class VerifyingReader:
    """Wraps a stream of a blob; raises CorruptData at EOF (or past `size`) unless the bytes match."""

    def __init__(self, raw: BinaryIO, digest: str, size: int | None = None, *, what: str = "blob") -> None:
        self._raw = raw
        self._digest = check_digest(digest)
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self._read = 0
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._read += len(data)
        if self._size is not None and self._read > self._size:
            raise CorruptData(f"{self._what} {self._digest} is longer than its {self._size} bytes")
        self._hash.update(data)
        if (not data and n != 0) or n is None or n < 0:
            self._check()
        return data

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._size is not None and self._read != self._size:
            raise CorruptData(f"{self._what} {self._digest} is truncated: {self._read} of {self._size} bytes")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise CorruptData(f"{self._what} digest mismatch: expected {self._digest}, got {actual}")

    def drain(self) -> None:
        """Read to the end so the digest is checked even when the consumer stopped early."""
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
