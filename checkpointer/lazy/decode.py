"""A pages chunk's bytes from its (verified) blob: one zstd frame, or several, holding exactly the
chunk's length; anything else is CorruptData."""
from __future__ import annotations

import zstandard

from ..errors import CorruptData


def decompress(packed: bytes, length: int, what: str) -> bytes:
    """The `length` bytes a chunk holds; CorruptData if it holds more, fewer, or is not zstd. A
    chunk is one frame as ckpt writes it: decoded in one call (half the time of a stream reader);
    several frames, which the format allows, go through the stream reader."""
    try:
        obj = zstandard.ZstdDecompressor().decompressobj()
        out = obj.decompress(packed)
        if not obj.unused_data:
            if len(out) != length:
                raise CorruptData(f"{what} does not hold its {length} bytes")
            return out
    except zstandard.ZstdError as exc:
        raise CorruptData(f"{what} is not valid zstd: {exc}") from None
    return _decompress_frames(packed, length, what)


def _decompress_frames(packed: bytes, length: int, what: str) -> bytes:
    out = bytearray(length)
    view = memoryview(out)
    pos = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(packed, read_across_frames=True) as reader:
            while pos < length:
                n = reader.readinto(view[pos:])
                if not n:
                    break
                pos += n
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise CorruptData(f"{what} is not valid zstd: {exc}") from None
    finally:
        view.release()
    if pos != length or extra:
        raise CorruptData(f"{what} does not hold its {length} bytes")
    return bytes(out)
