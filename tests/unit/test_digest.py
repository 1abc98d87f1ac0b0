"""checkpointer.oci.digest: digest syntax and the verifying reader."""
from __future__ import annotations

import hashlib
import io

import pytest

from checkpointer.errors import CorruptData
from checkpointer.oci.digest import VerifyingReader, check_digest, hex_of, sha256_digest, verify_bytes

DATA = bytes(range(256)) * 40  # 10240 bytes
GOOD = "sha256:" + hashlib.sha256(DATA).hexdigest()


class Tracking(io.BytesIO):
    closed_by_reader = False

    def close(self) -> None:
        self.closed_by_reader = True
        super().close()


def test_sha256_digest_and_hex_of() -> None:
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_digest(DATA) == GOOD
    assert hex_of(GOOD) == GOOD[7:]


@pytest.mark.parametrize("bad", [
    "", "sha256:", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64, "SHA256:" + "a" * 64,
    "sha512:" + "a" * 128, "md5:" + "a" * 32, "a" * 64, " sha256:" + "a" * 64, "sha256:" + "a" * 64 + " ",
    "sha256:" + "a" * 64 + "\n", "sha256:" + "g" * 64, "sha256:/../../" + "a" * 58, "sha256:" + "a" * 64 + "\0",
])
def test_check_digest_rejects_malformed(bad: str) -> None:
    with pytest.raises(CorruptData):
        check_digest(bad)
    with pytest.raises(CorruptData):
        hex_of(bad)


@pytest.mark.parametrize("bad", [None, 123, b"sha256:" + b"a" * 64, ["sha256:" + "a" * 64]])
def test_check_digest_rejects_non_strings(bad: object) -> None:
    with pytest.raises(CorruptData):
        check_digest(bad)  # type: ignore[arg-type]


def test_check_digest_returns_good_digest() -> None:
    assert check_digest(GOOD) is GOOD


def test_verify_bytes() -> None:
    assert verify_bytes(DATA, GOOD, len(DATA)) is DATA
    assert verify_bytes(DATA, GOOD) is DATA
    with pytest.raises(CorruptData, match="has 10239 bytes"):
        verify_bytes(DATA[:-1], GOOD, len(DATA))
    with pytest.raises(CorruptData, match="digest mismatch"):
        verify_bytes(DATA[:-1] + b"x", GOOD, len(DATA))


@pytest.mark.parametrize("size", [len(DATA), None])
@pytest.mark.parametrize("chunk", [-1, 1, 7, 4096, 1 << 20])
def test_verifying_reader_passes_good_data(size: int | None, chunk: int) -> None:
    reader = VerifyingReader(io.BytesIO(DATA), GOOD, size)
    out = bytearray()
    while block := reader.read(chunk):
        out += block
        if chunk < 0:
            break
    assert bytes(out) == DATA
    assert reader.read() == b""     # reading on at EOF stays quiet
    assert reader.read(10) == b""


def test_verifying_reader_read_zero_is_not_eof() -> None:
    reader = VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA))
    assert reader.read(0) == b""
    assert reader.read(100) == DATA[:100]
    assert reader.read(0) == b""
    assert reader.read() == DATA[100:]


@pytest.mark.parametrize("size", [len(DATA), None])
@pytest.mark.parametrize("chunk", [-1, 1000])
def test_verifying_reader_detects_a_wrong_digest(size: int | None, chunk: int) -> None:
    damaged = DATA[:5000] + bytes([DATA[5000] ^ 1]) + DATA[5001:]
    reader = VerifyingReader(io.BytesIO(damaged), GOOD, size)
    with pytest.raises(CorruptData, match="digest mismatch"):
        while reader.read(chunk):
            if chunk < 0:
                break


@pytest.mark.parametrize("chunk", [-1, 1000, 1 << 20])
def test_verifying_reader_detects_truncation(chunk: int) -> None:
    reader = VerifyingReader(io.BytesIO(DATA[:-1]), GOOD, len(DATA))
    with pytest.raises(CorruptData, match="truncated: 10239 of 10240"):
        while reader.read(chunk):
            if chunk < 0:
                break


@pytest.mark.parametrize("chunk", [-1, 1000, 1 << 20])
def test_verifying_reader_detects_extra_bytes(chunk: int) -> None:
    reader = VerifyingReader(io.BytesIO(DATA + b"!"), GOOD, len(DATA))
    with pytest.raises(CorruptData, match="longer than its 10240 bytes"):
        while reader.read(chunk):
            if chunk < 0:
                break


def test_verifying_reader_without_size_detects_extra_bytes_by_digest() -> None:
    with pytest.raises(CorruptData, match="digest mismatch"):
        VerifyingReader(io.BytesIO(DATA + b"!"), GOOD).read()


def test_drain_checks_what_the_consumer_did_not_read() -> None:
    reader = VerifyingReader(io.BytesIO(DATA[:-1] + b"x"), GOOD, len(DATA))
    assert reader.read(10) == DATA[:10]   # the consumer stops early ...
    with pytest.raises(CorruptData, match="digest mismatch"):
        reader.drain()                    # ... drain still finds the damage
    VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA)).drain()


def test_verifying_reader_refuses_a_malformed_digest_and_closes() -> None:
    with pytest.raises(CorruptData):
        VerifyingReader(io.BytesIO(DATA), "sha256:nope")
    raw = Tracking(DATA)
    with VerifyingReader(raw, GOOD, len(DATA)) as reader:
        reader.read()
    assert raw.closed_by_reader


def test_empty_blob() -> None:
    empty = sha256_digest(b"")
    assert VerifyingReader(io.BytesIO(b""), empty, 0).read() == b""
    with pytest.raises(CorruptData, match="longer"):
        VerifyingReader(io.BytesIO(b"x"), empty, 0).read(1)
