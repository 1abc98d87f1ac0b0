"""criu/fixups.py: a periodic timerfd that CRIU would restore disarmed (checkpoint-restore/criu#3162)
is re-armed in the dumped images, and nothing else changes. On CRIU's own images: one captured
from a real dump, and fresh dumps of the zoo's fds program (these need root, CRIU and gcc),
restored to show the repaired timer fires on where the unrepaired one falls silent."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from checkpointer.criu import fixups, rpc
from checkpointer.criu.images import _images
from checkpointer.criu.options import CriuOptions
from checkpointer.errors import CorruptData

REPO = Path(__file__).resolve().parents[2]

# files.img of `runc checkpoint` (runc 1.1.5, CRIU 4.2.1, kernel 6.18) of a container running
# samples/workloads/fds --timer periodic --period-ms 1. Its entries: REG /bin/fds, REG /dev/null,
# SIGNALFD, TIMERFD 0x4 (ticks 1, it_value 0, it_interval 1 ms: CRIU's dump log said
# "Dumping id 0x4 clockid 1 it_value(0, 0) it_interval(0, 1000000)"), EVENTFD, EVENTPOLL, REG /, REG /.
CAPTURED = base64.b64decode("""
GUNWVDgxMFZLAAAACAEQARpFCAEQABgAKgoIABAAGAAgACgAMggvYmluL2ZkcziKAUDQmi1Q7YMCWOKCuMEJWPKH26AEWP3Q2bAN
WOjHisIKWKjpnK8LKwAAAAgBEAIaJQgCEIKAAhgAKgoIABAAGAAgACgAMgkvZGV2L251bGw4jgFQtkMaAAAACAkQA1IUCAMQghAa
CggAEAAYACAAKAAggAQnAAAACBEQBGIhCAQQghAaCggAEAAYACAAKAAgASgBMAA4AEAASABQwIQ9GQAAAAgGEAVCEwgFEIIQGgoI
ABAAGAAgACgAIABbAAAACAcQBkpVCAYQAhoKCAAQABgAIAAoACIVCAAQBBgZIISAgIDQ8R8oEDCPCDgAIhUIABAFGBkghYCAgNDx
HygQMI8IOAAiFQgAEAMYGSCDgICA0PEfKBAwjwg4ACIAAAAIARAHGhwIBxAAGAAqCggAEAAYACAAKAAyAS84igFQ7YMBIgAAAAgB
EAgaHAgIEAAYACoKCAAQABgAIAAoADIBLziKAVDtgwE=""")
TIMER = 3  # the timerfd's index among CAPTURED's entries
HEADER = CAPTURED[:8]


def entries(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def image(messages: list[bytes], header: bytes = HEADER) -> bytes:
    return header + b"".join(struct.pack("<I", len(m)) + m for m in messages)


def decoded(message: bytes) -> Any:
    entry = _images().pb.file_entry()
    entry.ParseFromString(message)
    return entry


def with_timer(change: Callable[[Any], None]) -> bytes:
    """CAPTURED, its timer entry changed (re-encoded by pycriu)."""
    messages = entries(CAPTURED)
    entry = decoded(messages[TIMER])
    change(entry.tfd)
    messages[TIMER] = entry.SerializeToString()
    return image(messages)


def put(directory: Path, data: bytes, mode: int = 0o644) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / "files.img"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def snapshot(directory: Path) -> dict[str, tuple[str, int, int]]:
    """Each file's sha256, inode and mtime: a rewrite shows even with the same bytes."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(directory.iterdir())}


# -- the captured image --------------------------------------------------------------------------

def test_a_stalled_periodic_timer_gets_it_value_1ns_and_every_other_byte_stays(tmp_path: Path):
    path = put(tmp_path / "images", CAPTURED, mode=0o640)
    (tmp_path / "images" / "pstree.img").write_bytes(b"other images are not touched")
    others = snapshot(tmp_path / "images")["pstree.img"]

    repaired = fixups.repair_images(tmp_path / "images")

    assert len(repaired) == 1 and "timerfd 0x4" in repaired[0] and "1000000 ns" in repaired[0], repaired
    after, before = entries(path.read_bytes()), entries(CAPTURED)
    assert path.read_bytes()[:8] == HEADER and len(after) == len(before)
    assert [m for i, m in enumerate(after) if i != TIMER] == [m for i, m in enumerate(before) if i != TIMER]
    old, new = decoded(before[TIMER]), decoded(after[TIMER])
    assert (new.tfd.vsec, new.tfd.vnsec, new.tfd.ticks, new.tfd.insec) == (0, 1, 1, 1_000_000)
    old.tfd.vnsec = 1
    assert new == old  # nothing else in the entry moved
    assert path.stat().st_mode & 0o7777 == 0o640
    assert snapshot(tmp_path / "images")["pstree.img"] == others
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_a_repaired_directory_is_not_written_again(tmp_path: Path):
    put(tmp_path / "images", CAPTURED)
    assert fixups.repair_images(tmp_path / "images")
    before = snapshot(tmp_path / "images")
    assert fixups.repair_images(tmp_path / "images") == []
    assert snapshot(tmp_path / "images") == before


@pytest.mark.parametrize("change", [
    # disarmed by the program (timerfd_settime with it_value 0 and an interval): ticks 0, stays so
    lambda t: setattr(t, "ticks", 0),
    # running: it_value is the time left
    lambda t: setattr(t, "vnsec", 400_000),
    lambda t: setattr(t, "vsec", 2),
    # a one-shot timer that expired: no interval, the program re-arms it itself
    lambda t: setattr(t, "insec", 0),
], ids=["disarmed-by-program", "running-ns", "running-s", "one-shot-expired"])
def test_timers_that_restore_as_they_were_are_left_alone(tmp_path: Path, change: Callable[[Any], None]):
    put(tmp_path / "images", with_timer(change))
    before = snapshot(tmp_path / "images")
    assert fixups.repair_images(tmp_path / "images") == []
    assert snapshot(tmp_path / "images") == before


def test_an_interval_of_whole_seconds_counts(tmp_path: Path):
    put(tmp_path / "images", with_timer(lambda t: (setattr(t, "insec", 0), setattr(t, "isec", 3))))
    assert "every 3000000000 ns" in fixups.repair_images(tmp_path / "images")[0]


def test_no_files_image_nothing_to_repair(tmp_path: Path):
    assert fixups.repair_images(tmp_path) == []


def test_pycriu_is_imported_only_for_a_repair(tmp_path: Path):
    put(tmp_path / "quiet", with_timer(lambda t: setattr(t, "vnsec", 5)))
    put(tmp_path / "stalled", CAPTURED)
    probe = ("import sys; from pathlib import Path; from checkpointer.criu.fixups import repair_images; "
             "print(len(repair_images(Path(sys.argv[1]))), 'pycriu' in sys.modules)")
    for directory, expected in (("quiet", "0 False"), ("stalled", "1 True")):
        out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / directory)], capture_output=True,
                             text=True, check=True, cwd=REPO)
        assert out.stdout.split() == expected.split(), (directory, out.stdout, out.stderr)


# -- damaged and hostile images: CorruptData, and the file as it was ---------------------------

def field(number: int, value: int | bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


STALLED_BUT_INCOMPLETE = field(1, 17) + field(2, 4) + field(12, field(1, 4) + field(5, 1) + field(10, 5))

HOSTILE = {
    "empty": b"",
    "magic-only-half": HEADER[:4],
    "other-image": struct.pack("<II", 0x54564319, 0x56084025) + CAPTURED[8:],  # a pagemap's magic
    "length-overruns": HEADER + struct.pack("<I", 1 << 31) + CAPTURED[12:],
    "ends-in-a-length": CAPTURED + b"\x01\x00",
    "timerfd-without-timer": image([field(1, 17) + field(2, 4)]),
    "timerfd-timer-not-a-message": image([field(1, 17) + field(12, 7)]),
    "timer-overruns-entry": image([field(1, 17) + b"\x62\x7f" + field(1, 4)]),
    "endless-number": image([field(1, 17) + b"\x62\x0b" + b"\x38" + b"\xff" * 10]),
    "unknown-wire-type": image([field(1, 17) + b"\x62\x02\x3f\x00"]),
    "missing-required-fields": image([STALLED_BUT_INCOMPLETE]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_damaged_files_image_is_corrupt_data_and_stays_as_it_was(tmp_path: Path, name: str):
    path = put(tmp_path / "images", HOSTILE[name])
    with pytest.raises(CorruptData, match="files.img"):
        fixups.repair_images(tmp_path / "images")
    assert path.read_bytes() == HOSTILE[name]
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["files.img"]


def test_every_truncation_is_corrupt_or_repaired_never_a_crash(tmp_path: Path):
    outcomes = set()
    for size in range(len(CAPTURED)):
        path = put(tmp_path / "images", CAPTURED[:size])
        try:
            outcomes.add(len(fixups.repair_images(tmp_path / "images")))
        except CorruptData:
            outcomes.add("corrupt")
            assert path.read_bytes() == CAPTURED[:size]
    assert outcomes == {"corrupt", 0, 1}  # cut at an entry's end: a shorter image, the timer in it or not


def test_every_single_byte_change_is_corrupt_or_repaired_never_a_crash():
    outcomes = set()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as scratch:
        images = Path(scratch) / "images"  # on tmpfs: ~1000 repairs, each fsyncs
        for pos in range(8, len(CAPTURED)):
            for value in (0x00, 0x11, 0x62, 0x80, 0xFF):
                data = CAPTURED[:pos] + bytes([value]) + CAPTURED[pos + 1:]
                path = put(images, data)
                try:
                    outcomes.add(len(fixups.repair_images(images)))
                except CorruptData:
                    outcomes.add("corrupt")
                    assert path.read_bytes() == data
    assert outcomes == {"corrupt", 0, 1}


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo"])
def test_files_image_that_is_not_a_file_is_refused(tmp_path: Path, kind: str):
    images = tmp_path / "images"
    images.mkdir()
    target = put(tmp_path / "elsewhere", CAPTURED)
    if kind == "symlink":
        (images / "files.img").symlink_to(target)
    elif kind == "directory":
        (images / "files.img").mkdir()
    else:
        os.mkfifo(images / "files.img")
    with pytest.raises(CorruptData, match="files.img"):
        fixups.repair_images(images)
    assert target.read_bytes() == CAPTURED


# -- fresh dumps of a real process, restored ---------------------------------------------------

@pytest.fixture(scope="module")
def zoo_fds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in ("criu", "gcc") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing or not rpc.available():
        pytest.skip(f"needs root, pycriu and {', '.join(missing) or 'nothing else'} (scripts/setup.sh --test)")
    binary = tmp_path_factory.mktemp("zoo") / "fds"
    workloads = REPO / "samples" / "workloads"
    subprocess.run(["gcc", "-O2", "-static", "-I", str(workloads), "-o", str(binary), str(workloads / "fds.c")],
                   check=True)
    return binary


def state(path: Path) -> dict[str, str]:
    return dict(word.split("=", 1) for word in path.read_text().split())


def wait_state(path: Path, predicate: Callable[[dict[str, str]], bool], timeout: float = 10) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = state(path)
            if predicate(now):
                return now
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"state never matched: {path.read_text() if path.exists() else 'no state file'}")


def dump_fds(binary: Path, work: Path, *args: str) -> tuple[Path, Path]:
    """A bare fds process dumped with CRIU (which ends it): (images, its state file)."""
    images, criu_work, state_file = work / "images", work / "criu", work / "state"
    images.mkdir(parents=True)
    criu_work.mkdir()
    proc = subprocess.Popen(["setsid", str(binary), *args, "--state", str(state_file)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_state(state_file, lambda s: int(s["expirations"]) >= 20)
        rpc.dump(proc.pid, images, criu_work, CriuOptions())  # setsid execs in place: the pid is the workload's
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return images, state_file


def restore_and_watch(images: Path, work: Path, state_file: Path, seconds: float) -> dict[str, str]:
    """Restore the dump, let it run `seconds`, end it: its last state."""
    work.mkdir()
    at_dump = int(state(state_file)["expirations"])
    pid = rpc.restore(images, work, CriuOptions()).pid  # a child of this process (CRIU's sibling)
    try:
        time.sleep(seconds)
        last = state(state_file)
        last["gained"] = str(int(last["expirations"]) - at_dump)
        return last
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_real_dump_is_repaired_and_its_timer_fires_on_after_restore(zoo_fds: Path, tmp_path: Path):
    # 1 ms: the freeze before CRIU reads the timer's fdinfo always lasts longer than that.
    images, state_file = dump_fds(zoo_fds, tmp_path, "--timer", "periodic", "--period-ms", "1")
    pristine = tmp_path / "pristine"
    shutil.copytree(images, pristine)
    before = snapshot(images)

    repaired = fixups.repair_images(images)

    assert len(repaired) == 1 and "every 1000000 ns" in repaired[0], repaired
    after = snapshot(images)
    assert {n for n in before if before[n] != after[n]} == {"files.img"}
    # Without the repair CRIU restores the timer disarmed; the workload says so after a second.
    silent = restore_and_watch(pristine, tmp_path / "restore-pristine", state_file, 1.6)
    assert silent["ok"] == "0" and silent["error"] == "timer_silent", silent
    repaired_run = restore_and_watch(images, tmp_path / "restore-repaired", state_file, 1.6)
    assert repaired_run["ok"] == "1", repaired_run
    assert int(repaired_run["gained"]) > 500, repaired_run  # ~1 per ms; a state line every 100


def test_real_dumps_without_a_stalled_timer_are_left_byte_identical(zoo_fds: Path, tmp_path: Path):
    # A one-shot timer (the program re-arms it: CRIU restores it right), and a process with no timer.
    oneshot, _ = dump_fds(zoo_fds, tmp_path / "oneshot", "--timer", "oneshot", "--period-ms", "1")
    assert any(decoded(m).type == 17 for m in entries(oneshot.joinpath("files.img").read_bytes()))  # a TIMERFD
    sleeper = tmp_path / "sleeper"
    (sleeper / "images").mkdir(parents=True)
    (sleeper / "criu").mkdir()
    proc = subprocess.Popen(["setsid", "/bin/busybox", "sleep", "60"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rpc.dump(proc.pid, sleeper / "images", sleeper / "criu", CriuOptions())
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for images in (oneshot, sleeper / "images"):
        before = snapshot(images)
        assert fixups.repair_images(images) == []
        assert snapshot(images) == before
