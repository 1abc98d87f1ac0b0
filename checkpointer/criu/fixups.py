"""Repairs of what CRIU dumps wrongly, made in a dumped image directory before it is restored.

A periodic timerfd that expired while the tasks were frozen (its period shorter than the
freeze, and nobody read it yet) shows in /proc/PID/fdinfo as `ticks: 1`, `it_value: (0, 0)`
and its interval. CRIU dumps exactly that (checkpoint-restore/criu#3162, CRIU 4.2.1 still does)
and on restore calls timerfd_settime() with it_value 0, which disarms the timer, then sets the
tick count: the program reads that one tick and its timer never fires again. The repair gives
such an entry an it_value of 1 ns, so the restored timer fires at once and then every interval,
as it would have. (With TFD_TIMER_ABSTIME CRIU adds the current second to it_value, which still
lies in the past: it fires at once too.)

ticks must be >= 1: a timer the program disarmed (timerfd_settime with it_value 0 and an
interval) shows the same it_value and interval, with ticks 0, and must stay disarmed.

CRIU >= 3.4 keeps timerfd entries in files.img (file_entry, type TIMERFD, field `tfd`); the
timerfd.img of older versions is not looked at. The file is scanned with the small protobuf
reader of images.py; pycriu (~60 ms to import) is loaded only when an entry needs the repair,
and only the repaired entries are re-encoded: every other byte stays as CRIU wrote it.
"""
from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import CorruptData
from .images import IMG_COMMON, pycriu_images, varint, varint_fields

FILES_IMG = "files.img"
_FILES_MAGIC = 0x56303138  # criu/include/magic.h
_TIMERFD = 17  # images/fdinfo.proto: fd_types.TIMERFD
_FE_TYPE, _FE_TFD = 1, 12  # file_entry's fields
_TFD_ID, _TFD_TICKS, _TFD_VSEC, _TFD_VNSEC, _TFD_ISEC, _TFD_INSEC = 1, 5, 7, 8, 9, 10  # timerfd_entry's
_LENGTH_DELIMITED = 2


@dataclass(frozen=True, slots=True)
class _Entry:
    start: int  # of the message, after its 4-byte length
    end: int


@dataclass(frozen=True, slots=True)
class _Stalled:
    """A timerfd entry that CRIU would restore disarmed."""
    entry: _Entry
    timer_id: int
    ticks: int
    interval_ns: int


def repair_images(images: Path) -> list[str]:
    """Repair the CRIU image directory `images` in place (see the module's doc); one line per
    repaired entry, for a debug log. A directory with nothing to repair is not written to.
    Raises CorruptData for an image that cannot be read as CRIU wrote it."""
    return _repair_timerfds(images / FILES_IMG)


def _repair_timerfds(path: Path) -> list[str]:
    read = _read(path)
    if read is None:
        return []
    data, mode = read
    stalled = [found for entry in _entries(data, path.name)
               if (found := _stalled_timer(data, entry, path.name)) is not None]
    if not stalled:
        return []
    patched = {s.entry.start: _rearmed(data[s.entry.start:s.entry.end], s, path.name) for s in stalled}
    out = bytearray(data[:8])
    for entry in _entries(data, path.name):
        message = patched.get(entry.start, data[entry.start:entry.end])
        out += struct.pack("<I", len(message)) + message
    atomic.write_bytes(path, bytes(out), mode=mode)
    return [f"{path.name}: timerfd {s.timer_id:#x} (every {s.interval_ns} ns) expired while frozen with "
            f"{s.ticks} tick(s) unread; CRIU would restore it disarmed: it_value set to 1 ns" for s in stalled]


def _read(path: Path) -> tuple[bytes, int] | None:
    """The file's bytes and permission bits; None if there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a link where CRIU writes a file
        raise CorruptData(f"CRIU image {path.name} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptData(f"CRIU image {path.name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(), stat.S_IMODE(info.st_mode)
    finally:
        os.close(fd)


def _entries(data: bytes, name: str) -> Iterator[_Entry]:
    """Each entry of a files.img: IMG_COMMON and FILES magic, then (u32 length, message)..."""
    if len(data) < 8 or struct.unpack_from("<II", data) != (IMG_COMMON, _FILES_MAGIC):
        raise CorruptData(f"CRIU image {name} is not a files image")
    pos = 8
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptData(f"CRIU image {name} ends inside an entry")
        (size,) = struct.unpack_from("<I", data, pos)
        start, end = pos + 4, pos + 4 + size
        if end > len(data):
            raise CorruptData(f"CRIU image {name} ends inside an entry")
        yield _Entry(start, end)
        pos = end


def _stalled_timer(data: bytes, entry: _Entry, name: str) -> _Stalled | None:
    if varint_fields(data, entry.start, entry.end, name).get(_FE_TYPE) != _TIMERFD:
        return None
    span = _submessage(data, entry, _FE_TFD, name)
    if span is None:
        raise CorruptData(f"CRIU image {name} has a timerfd entry without its timer")
    timer = varint_fields(data, span[0], span[1], name)
    interval = timer.get(_TFD_ISEC, 0) * 1_000_000_000 + timer.get(_TFD_INSEC, 0)
    ticks = timer.get(_TFD_TICKS, 0)
    if interval and ticks and not timer.get(_TFD_VSEC, 0) and not timer.get(_TFD_VNSEC, 0):
        return _Stalled(entry, timer.get(_TFD_ID, 0), ticks, interval)
    return None


def _submessage(data: bytes, entry: _Entry, number: int, name: str) -> tuple[int, int] | None:
    """(start, end) of the last length-delimited field `number` of the message (protobuf: the
    last one counts)."""
    found, pos = None, entry.start
    while pos < entry.end:
        key, pos = varint(data, pos, entry.end, name)
        wire = key & 7
        if wire == 0:
            _, pos = varint(data, pos, entry.end, name)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = varint(data, pos, entry.end, name)
            if key >> 3 == number:
                found = (pos, pos + length)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise CorruptData(f"CRIU image {name} holds a field of unknown wire type {wire}")
    if pos != entry.end or (found and found[1] > entry.end):
        raise CorruptData(f"CRIU image {name} has an entry that overruns its length")
    return found


def _rearmed(message: bytes, stalled: _Stalled, name: str) -> bytes:
    """The file_entry `message` with its timer's it_value set to 1 ns, re-encoded by pycriu's
    generated class, once every field CRIU requires is found there."""
    entry = pycriu_images().pb.file_entry()
    try:
        entry.ParseFromString(message)
    except Exception as exc:  # protobuf's DecodeError, or what else a hostile message provokes
        raise CorruptData(f"CRIU image {name} has a timerfd entry that cannot be decoded: {exc}") from None
    if not entry.IsInitialized():  # upb's parser does not check proto2's required fields
        raise CorruptData(f"CRIU image {name} has a timerfd entry without all of its fields")
    timer = entry.tfd
    if (entry.type != _TIMERFD or not entry.HasField("tfd") or timer.vsec or timer.vnsec
            or timer.id != stalled.timer_id):
        raise CorruptData(f"CRIU image {name} has a timerfd entry that decodes two ways")
    timer.vnsec = 1
    return bytes(entry.SerializeToString())


__all__ = ["FILES_IMG", "repair_images"]
