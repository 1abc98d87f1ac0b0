"""checkpointer.oci.tarball: deterministic packing and the hostile-input-proof unpacker."""
from __future__ import annotations

import io
import os
import random
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest

from checkpointer.errors import CorruptData
from checkpointer.oci import tarball
from checkpointer.oci.tarball import CRIU_IMAGES, ROOTFS, unpack
from unit.tarcraft import Sandbox, craft, entry, members_of, packed


Streams = Callable[[bytes], BinaryIO]


@pytest.fixture(params=["stream", "file"])
def as_stream(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Callable[[bytes], BinaryIO]]:
    """Archive bytes as the unpacker meets them: a stream (a layer, a decompressor) read in
    order, or a plain file on disk (a runtime's export archive), read at random."""
    opened: list[BinaryIO] = []

    def make(data: bytes) -> BinaryIO:
        if request.param == "stream":
            return io.BytesIO(data)
        path = tmp_path_factory.mktemp("archive") / "a.tar"
        path.write_bytes(data)
        opened.append(open(path, "rb"))
        return opened[-1]

    yield make
    for f in opened:
        f.close()


IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (chown, setuid)")


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def make_tree(root: Path) -> None:
    root.mkdir(exist_ok=True)
    (root / "c.txt").write_bytes(b"ccc")
    (root / "a.txt").write_bytes(b"a" * 5000)
    (root / "dir").mkdir()
    (root / "dir" / "z").write_bytes(b"zz")
    (root / "dir" / "y").write_bytes(b"")
    (root / "dir" / "sub").mkdir()
    (root / "dir" / "sub" / "deep").write_bytes(b"deep")
    (root / "b.lnk").symlink_to("a.txt")
    os.link(root / "a.txt", root / "dir" / "hard")
    (root / "a.txt").chmod(0o640)
    (root / "empty").mkdir(mode=0o700)
    (root / "empty").chmod(0o700)


# -- pack --------------------------------------------------------------------------------------

def test_pack_is_deterministic_and_ignores_mtimes(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    first = packed(tmp_path / "t")
    assert packed(tmp_path / "t") == first
    for path in (tmp_path / "t").rglob("*"):
        os.utime(path, (123456789, 987654321), follow_symlinks=False)
    assert packed(tmp_path / "t") == first
    assert all(m.mtime == 0 for m in members_of(first))


def test_pack_same_content_in_another_directory_gives_same_bytes(tmp_path: Path) -> None:
    make_tree(tmp_path / "one")
    make_tree(tmp_path / "two")
    assert packed(tmp_path / "one") == packed(tmp_path / "two")


def test_pack_keeps_mtimes_when_asked(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    os.utime(tmp_path / "t" / "c.txt", (5, 1_600_000_000))
    first = packed(tmp_path / "t", zero_mtime=False)
    by_name = {m.name: m for m in members_of(first)}
    assert by_name["c.txt"].mtime == 1_600_000_000
    os.utime(tmp_path / "t" / "c.txt", (5, 1_600_000_001))
    assert packed(tmp_path / "t", zero_mtime=False) != first


def test_pack_orders_entries_sorted_depth_first_without_user_names(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    members = members_of(packed(tmp_path / "t"))
    assert [m.name for m in members] == [
        "a.txt", "b.lnk", "c.txt", "dir", "dir/hard", "dir/sub", "dir/sub/deep", "dir/y", "dir/z", "empty"]
    assert all(m.uname == "" and m.gname == "" for m in members)
    st = os.lstat(tmp_path / "t" / "c.txt")
    assert all((m.uid, m.gid) == (st.st_uid, st.st_gid) for m in members)


def test_pack_writes_hardlinks_as_links_and_symlinks_verbatim(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    by_name = {m.name: m for m in members_of(packed(tmp_path / "t"))}
    assert by_name["a.txt"].isreg() and by_name["a.txt"].size == 5000
    hard = by_name["dir/hard"]
    assert hard.islnk() and hard.linkname == "a.txt" and hard.size == 0
    assert by_name["b.lnk"].issym() and by_name["b.lnk"].linkname == "a.txt"
    assert by_name["a.txt"].mode == 0o640 and by_name["empty"].mode == 0o700
    assert by_name["dir"].isdir()


def test_pack_only_the_named_tops_and_skips_sockets(tmp_path: Path) -> None:
    import socket

    make_tree(tmp_path / "t")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "t" / "sock"))
    names = [m.name for m in members_of(packed(tmp_path / "t", names=["empty", "dir"]))]
    assert names == ["dir", "dir/hard", "dir/sub", "dir/sub/deep", "dir/y", "dir/z", "empty"]
    # the first name of a hard-linked inode in the archive is the file, the next ones link to it
    assert members_of(packed(tmp_path / "t", names=["dir"]))[1].isreg()
    assert "sock" not in [m.name for m in members_of(packed(tmp_path / "t"))]


def test_a_named_fifo_round_trips_in_a_rootfs_and_is_refused_elsewhere(tmp_path: Path, as_stream: Streams) -> None:
    """CRIU reopens a FIFO of the container's rootfs by its path: it must be there after a restore."""
    (tmp_path / "t").mkdir()
    os.mkfifo(tmp_path / "t" / "fifo", 0o640)
    archive = packed(tmp_path / "t")
    [member] = members_of(archive)
    assert member.isfifo() and member.mode == 0o640
    out = tmp_path / "out"
    out.mkdir()
    tarball.unpack(as_stream(archive), out, tarball.ROOTFS)
    st = os.lstat(out / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    criu = tmp_path / "criu"
    criu.mkdir()
    with pytest.raises(CorruptData, match="fifo"):
        tarball.unpack(as_stream(archive), criu, tarball.CRIU_IMAGES)


# -- round trips -------------------------------------------------------------------------------

def test_round_trip_rootfs_keeps_links_modes_and_contents(tmp_path: Path, as_stream: Streams) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "abs.lnk").symlink_to("/etc/passwd")
    (src / "up.lnk").symlink_to("../..")
    (src / "exe").write_bytes(b"#!/bin/sh\n")
    (src / "exe").chmod(0o750)
    os.utime(src / "exe", (0, 1_500_000_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    seen: list[int] = []
    unpack(as_stream(packed(src, zero_mtime=False)), dest, ROOTFS, on_bytes=seen.append)
    assert sum(seen) == 5000 + 3 + 2 + 4 + len(b"#!/bin/sh\n")
    assert os.readlink(dest / "b.lnk") == "a.txt"
    assert os.readlink(dest / "abs.lnk") == "/etc/passwd"
    assert os.readlink(dest / "up.lnk") == "../.."
    assert os.lstat(dest / "a.txt").st_ino == os.lstat(dest / "dir" / "hard").st_ino
    assert os.lstat(dest / "a.txt").st_nlink == 2
    assert (dest / "a.txt").read_bytes() == b"a" * 5000
    assert (dest / "dir" / "sub" / "deep").read_bytes() == b"deep"
    assert stat.S_IMODE(os.lstat(dest / "a.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(dest / "exe").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(dest / "empty").st_mode) == 0o700
    assert os.lstat(dest / "exe").st_mtime == 1_500_000_000
    # the tree packs back to the very same bytes
    assert packed(dest, zero_mtime=False) == packed(src, zero_mtime=False)


def test_round_trip_keeps_directory_mtimes_and_read_only_directories(tmp_path: Path, as_stream: Streams) -> None:
    """Directory metadata is applied after the directory's children were written."""
    data = craft(entry("ro", tarfile.DIRTYPE, mode=0o555, mtime=1_400_000_000),
                 entry("ro/f", data=b"x", mtime=1_300_000_000),
                 entry("ro/sub", tarfile.DIRTYPE, mode=0o500, mtime=1_200_000_000),
                 entry("ro/sub/g", data=b"y"))
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        unpack(as_stream(data), dest, CRIU_IMAGES)
        assert os.lstat(dest / "ro").st_mtime == 1_400_000_000
        assert os.lstat(dest / "ro" / "sub").st_mtime == 1_200_000_000
        assert os.lstat(dest / "ro" / "f").st_mtime == 1_300_000_000
        assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
        assert stat.S_IMODE(os.lstat(dest / "ro" / "sub").st_mode) == 0o500
        assert (dest / "ro" / "sub" / "g").read_bytes() == b"y"
    finally:
        for d in (dest / "ro", dest / "ro" / "sub"):
            if d.exists():
                d.chmod(0o755)


@needs_root
def test_round_trip_rootfs_as_root_keeps_owners_and_setuid(tmp_path: Path, as_stream: Streams) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "suid").write_bytes(b"elf")
    os.chown(src / "suid", 0, 0)
    (src / "suid").chmod(0o4755)
    (src / "sgid-dir").mkdir()
    os.chown(src / "sgid-dir", 1234, 5678)
    (src / "sgid-dir").chmod(0o2775)
    os.chown(src / "c.txt", 1000, 1001)
    os.chown(src / "b.lnk", 4321, 8765, follow_symlinks=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(as_stream(packed(src)), dest, ROOTFS)
    assert stat.S_IMODE(os.lstat(dest / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "sgid-dir").st_mode) == 0o2775
    assert (os.lstat(dest / "sgid-dir").st_uid, os.lstat(dest / "sgid-dir").st_gid) == (1234, 5678)
    assert (os.lstat(dest / "c.txt").st_uid, os.lstat(dest / "c.txt").st_gid) == (1000, 1001)
    assert (os.lstat(dest / "b.lnk").st_uid, os.lstat(dest / "b.lnk").st_gid) == (4321, 8765)


@needs_root
def test_criu_images_policy_does_not_keep_owners(tmp_path: Path, as_stream: Streams) -> None:
    data = craft(entry("f", data=b"x", uid=1234, gid=5678))
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(as_stream(data), dest, CRIU_IMAGES)
    assert (os.lstat(dest / "f").st_uid, os.lstat(dest / "f").st_gid) == (0, 0)


def test_round_trip_criu_images(tmp_path: Path, as_stream: Streams) -> None:
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    (src / "img" / "pages-1.img").write_bytes(os.urandom(70_000))
    (src / "img" / "core-1.img").write_bytes(b"core")
    (src / "stats-dump").write_bytes(b"")
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(as_stream(packed(src)), dest, CRIU_IMAGES)
    for rel in ("img/pages-1.img", "img/core-1.img", "stats-dump"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()


def test_unpack_replaces_an_existing_file_and_symlink_without_following_it(box: Sandbox, as_stream: Streams) -> None:
    (box.dest / "plain").write_bytes(b"old")
    data = craft(entry("lnk", tarfile.SYMTYPE, linkname=str(box.outside / "target")),
                 entry("lnk", data=b"new"), entry("plain", data=b"new too"))
    unpack(as_stream(data), box.dest, ROOTFS)
    assert not os.path.islink(box.dest / "lnk")
    assert (box.dest / "lnk").read_bytes() == b"new"
    assert (box.dest / "plain").read_bytes() == b"new too"
    box.assert_untouched()


def test_unpack_accepts_dot_entries_and_existing_directories(box: Sandbox, as_stream: Streams) -> None:
    (box.dest / "d").mkdir()
    data = craft(entry(".", tarfile.DIRTYPE), entry("./d", tarfile.DIRTYPE, mode=0o711),
                 entry("./d//f", data=b"1"))
    unpack(as_stream(data), box.dest, CRIU_IMAGES)
    assert (box.dest / "d" / "f").read_bytes() == b"1"
    assert stat.S_IMODE(os.lstat(box.dest / "d").st_mode) == 0o711


# -- hostile archives --------------------------------------------------------------------------

def _hostile(b: Sandbox) -> dict[str, tuple[bytes, tarball.UnpackPolicy]]:
    out = str(b.outside)
    secret = str(b.victim / "secret")
    r, c = ROOTFS, CRIU_IMAGES
    return {
        "absolute path": (craft(entry(out + "/x", data=b"pwned")), r),
        "dotdot": (craft(entry("../outside/x", data=b"pwned")), r),
        "dotdot inside": (craft(entry("a/../../outside/x", data=b"pwned")), r),
        "dotdot directory": (craft(entry("../outside/d", tarfile.DIRTYPE)), r),
        "absolute symlink name": (craft(entry(out + "/l", tarfile.SYMTYPE, linkname="x")), r),
        "symlink under criu policy": (craft(entry("l", tarfile.SYMTYPE, linkname="x")), c),
        "write through absolute symlink": (craft(entry("evil", tarfile.SYMTYPE, linkname=out),
                                                 entry("evil/pwned", data=b"pwned")), r),
        "write through /tmp/x symlink": (craft(entry("evil", tarfile.SYMTYPE, linkname="/tmp/x"),
                                               entry("evil/pwned", data=b"pwned")), r),
        "mkdir through symlink": (craft(entry("evil", tarfile.SYMTYPE, linkname=out),
                                        entry("evil/d", tarfile.DIRTYPE)), r),
        "symlink through symlink": (craft(entry("evil", tarfile.SYMTYPE, linkname=out),
                                          entry("evil/l", tarfile.SYMTYPE, linkname="/")), r),
        "write through dotdot symlink": (craft(entry("up", tarfile.SYMTYPE, linkname=".."),
                                               entry("up/outside/pwned", data=b"pwned")), r),
        "dotdot symlink then directory": (craft(entry("up", tarfile.SYMTYPE, linkname=".."),
                                                entry("up", tarfile.DIRTYPE),
                                                entry("up/outside/pwned", data=b"pwned")), r),
        "symlink in a deeper parent": (craft(entry("a", tarfile.DIRTYPE),
                                             entry("a/b", tarfile.SYMTYPE, linkname="../.."),
                                             entry("a/b/outside/pwned", data=b"pwned")), r),
        "hardlink to /etc/passwd": (craft(entry("h", tarfile.LNKTYPE, linkname="/etc/passwd")), r),
        "hardlink to absolute victim": (craft(entry("h", tarfile.LNKTYPE, linkname=secret)), r),
        "hardlink to ../x": (craft(entry("h", tarfile.LNKTYPE, linkname="../victim/secret")), r),
        "hardlink through a symlink": (craft(entry("s", tarfile.SYMTYPE, linkname=str(b.victim)),
                                             entry("h", tarfile.LNKTYPE, linkname="s/secret")), r),
        "hardlink through a dotdot symlink": (craft(entry("s", tarfile.SYMTYPE, linkname=".."),
                                                    entry("h", tarfile.LNKTYPE, linkname="s/victim/secret")), r),
        "hardlink to a later name": (craft(entry("h", tarfile.LNKTYPE, linkname="f"), entry("f", data=b"x")), r),
        "hardlink to a directory": (craft(entry("d", tarfile.DIRTYPE), entry("h", tarfile.LNKTYPE, linkname="d")), r),
        "hardlink to a symlink": (craft(entry("s", tarfile.SYMTYPE, linkname=secret),
                                        entry("h", tarfile.LNKTYPE, linkname="s")), r),
        "hardlink to itself": (craft(entry("f", data=b"x"), entry("f", tarfile.LNKTYPE, linkname="f")), r),
        "hardlink to the root": (craft(entry("h", tarfile.LNKTYPE, linkname=".")), r),
        "hardlink with empty target": (craft(entry("h", tarfile.LNKTYPE, linkname="")), r),
        "symlink with empty target": (craft(entry("l", tarfile.SYMTYPE, linkname="")), r),
        "symlink with NUL in target": (craft(entry("l", tarfile.SYMTYPE, linkname="a",
                                                   pax_headers={"linkpath": "a\x00b"})), r),
        "hardlink under criu policy": (craft(entry("f", data=b"x"), entry("h", tarfile.LNKTYPE, linkname="f")), c),
        "char device": (craft(entry("null", tarfile.CHRTYPE, devmajor=1, devminor=3)), r),
        "block device": (craft(entry("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)), r),
        "fifo under criu policy": (craft(entry("fifo", tarfile.FIFOTYPE)), c),
        "setuid under criu policy": (craft(entry("suid", data=b"x", mode=0o4755)), c),
        "setgid directory under criu policy": (craft(entry("d", tarfile.DIRTYPE, mode=0o2755)), c),
        "file replaces a directory": (craft(entry("d", tarfile.DIRTYPE), entry("d/f", data=b"x"),
                                            entry("d", data=b"x")), r),
        "symlink replaces a directory": (craft(entry("d", tarfile.DIRTYPE), entry("d/f", data=b"x"),
                                               entry("d", tarfile.SYMTYPE, linkname=out)), r),
        "hardlink replaces a directory": (craft(entry("f", data=b"x"), entry("d", tarfile.DIRTYPE),
                                                entry("d", tarfile.LNKTYPE, linkname="f")), r),
        "directory over a file": (craft(entry("f", data=b"x"), entry("f", tarfile.DIRTYPE)), r),
        "directory over a symlink": (craft(entry("l", tarfile.SYMTYPE, linkname=out),
                                           entry("l", tarfile.DIRTYPE, mode=0o777)), r),
        "file below a file": (craft(entry("f", data=b"x"), entry("f/g", data=b"x")), r),
        "name with NUL": (craft(entry("x", data=b"x", pax_headers={"path": "a\x00b"})), r),
        "name component too long": (craft(entry("n" * 300, data=b"x")), r),
        "mtime out of range": (craft(entry("f", data=b"x", pax_headers={"mtime": "1e300"})), r),
        "huge mtime": (craft(entry("f", data=b"x", mtime=10 ** 25), fmt=tarfile.GNU_FORMAT), r),
        "huge uid": (craft(entry("f", data=b"x", uid=2 ** 40), fmt=tarfile.GNU_FORMAT), r),
    }


def _hostile_names() -> list[str]:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return list(_hostile(Sandbox(Path(tmp))))


@pytest.mark.parametrize("case", _hostile_names())
def test_hostile_archive_is_refused_and_writes_nothing_outside(box: Sandbox, case: str, as_stream: Streams) -> None:
    data, policy = _hostile(box)[case]
    with pytest.raises(CorruptData):
        unpack(as_stream(data), box.dest, policy)
    box.assert_untouched()


def test_hardlink_through_symlink_does_not_link_the_outside_file(box: Sandbox, as_stream: Streams) -> None:
    """The case that once linked to a file outside: the name must be resolved without symlinks."""
    data, policy = _hostile(box)["hardlink through a symlink"]
    with pytest.raises(CorruptData, match="hard link"):
        unpack(as_stream(data), box.dest, policy)
    assert not (box.dest / "h").exists()


# -- damaged archives --------------------------------------------------------------------------

def _two_files() -> bytes:
    return craft(entry("one", data=b"1" * 700), entry("two", data=b"2" * 100), fmt=tarfile.USTAR_FORMAT)


@pytest.mark.parametrize("cut", [0, 1, 100, 511, 512, 700, 1211, 1212, 1535, 1536, 1600, 2047, 2048, 2100, 2559,
                                 2560, 2561, 3000])
def test_truncated_archive_is_corrupt(tmp_path: Path, cut: int, as_stream: Streams) -> None:
    # layout: header one @0, data @512..1212 (padded to 1536), header two @1536, data @2048..2148
    # (padded to 2560), end-of-archive blocks @2560
    data = _two_files()
    assert len(data) >= 2560 + 1024
    with pytest.raises(CorruptData):
        unpack(as_stream(data[:cut]), tmp_path, CRIU_IMAGES)


def test_the_uncut_archive_unpacks(tmp_path: Path, as_stream: Streams) -> None:
    unpack(as_stream(_two_files()), tmp_path, CRIU_IMAGES)
    assert (tmp_path / "one").read_bytes() == b"1" * 700
    assert (tmp_path / "two").read_bytes() == b"2" * 100
    # one end-of-archive block is enough (some writers stop there)
    (tmp_path / "again").mkdir()
    unpack(as_stream(_two_files()[:2560 + 512]), tmp_path / "again", CRIU_IMAGES)
    assert (tmp_path / "again" / "two").read_bytes() == b"2" * 100


@pytest.mark.parametrize("seed", range(8))
def test_random_garbage_is_corrupt(tmp_path: Path, seed: int, as_stream: Streams) -> None:
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.choice([1, 300, 512, 513, 4096, 20000]))
    with pytest.raises(CorruptData):
        unpack(as_stream(garbage), tmp_path, ROOTFS)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["header", "middle"])
def test_garbage_where_a_header_should_be_is_corrupt(tmp_path: Path, where: str, as_stream: Streams) -> None:
    data = bytearray(_two_files())
    if where == "header":   # the second header's checksum no longer matches
        data[1536 + 10] ^= 0xFF
    else:                   # a block of noise in place of the end-of-archive marker
        data[2560:2560 + 512] = random.Random(1).randbytes(512)
    with pytest.raises(CorruptData):
        unpack(as_stream(bytes(data)), tmp_path, CRIU_IMAGES)


def test_empty_stream_is_corrupt(tmp_path: Path, as_stream: Streams) -> None:
    with pytest.raises(CorruptData):
        unpack(as_stream(b""), tmp_path, CRIU_IMAGES)


def test_an_empty_archive_is_fine(tmp_path: Path, as_stream: Streams) -> None:
    unpack(as_stream(b"\0" * 1024), tmp_path, CRIU_IMAGES)
    unpack(as_stream(craft()), tmp_path, CRIU_IMAGES)
    assert os.listdir(tmp_path) == []


def test_huge_declared_size_is_refused_before_anything_is_written(tmp_path: Path, as_stream: Streams) -> None:
    info, _ = entry("big")
    info.size = 10 << 30  # 10 GiB declared, 1 KiB present: written as a PAX size record
    data = info.tobuf(tarfile.PAX_FORMAT) + b"x" * 1024
    with pytest.raises(CorruptData, match="more than"):
        unpack(as_stream(data), tmp_path, replace(ROOTFS, max_bytes=1 << 20))
    assert os.listdir(tmp_path) == []
    with pytest.raises(CorruptData):    # default limit: it is simply truncated
        unpack(as_stream(data), tmp_path, ROOTFS)


def test_max_bytes_counts_the_whole_archive(tmp_path: Path, as_stream: Streams) -> None:
    data = craft(entry("a", data=b"a" * 600), entry("b", data=b"b" * 600))
    with pytest.raises(CorruptData, match="more than 1000 bytes"):
        unpack(as_stream(data), tmp_path, replace(CRIU_IMAGES, max_bytes=1000))
    assert not (tmp_path / "b").exists()
    (tmp_path / "ok").mkdir()
    unpack(as_stream(data), tmp_path / "ok", replace(CRIU_IMAGES, max_bytes=1200))
    assert (tmp_path / "ok" / "b").read_bytes() == b"b" * 600


def test_sparse_member_counts_its_full_size(tmp_path: Path, as_stream: Streams) -> None:
    """A GNU sparse file declares its real size; max_bytes applies to that, not to the stored data."""
    # old-GNU sparse header: one 512-byte chunk at offset 0 of a 1 GiB file
    info = tarfile.TarInfo("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 512
    buf = info.tobuf(format=tarfile.GNU_FORMAT)
    header = bytearray(buf[:512])
    sparse = tarfile.itn(0, 12, tarfile.GNU_FORMAT) + tarfile.itn(512, 12, tarfile.GNU_FORMAT)
    header[386:386 + 24] = sparse
    header[483:495] = tarfile.itn(1 << 30, 12, tarfile.GNU_FORMAT)  # realsize
    header[148:156] = b" " * 8
    chksum = sum(header)
    header[148:156] = b"%06o\0 " % chksum
    data = bytes(header) + b"s" * 512 + b"\0" * 1024
    members = members_of(data)
    assert members[0].size == 1 << 30
    with pytest.raises(CorruptData, match="more than"):
        unpack(as_stream(data), tmp_path, replace(ROOTFS, max_bytes=1 << 20))
    assert os.listdir(tmp_path) == []


def test_root_directory_metadata_round_trips_for_rootfs_only(tmp_path):
    import io
    import os

    from checkpointer.oci import tarball as tb

    src = tmp_path / "root"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"x")
    os.chmod(src, 0o555)  # a container root as Podman makes it; CRIU checks it on restore
    buf = io.BytesIO()
    tb.pack(src, buf, zero_mtime=False, include_root=True)
    for policy, expected in ((tb.ROOTFS, 0o555), (tb.CRIU_IMAGES, 0o700)):
        dest = tmp_path / f"out-{expected:o}"
        dest.mkdir(mode=0o700)
        os.chmod(dest, 0o700)
        buf.seek(0)
        if policy is tb.CRIU_IMAGES:
            buf2 = io.BytesIO()
            tb.pack(src / "bin", buf2, include_root=True)  # files only, as CRIU layers hold
            buf2.seek(0)
            tb.unpack(buf2, dest, policy)
        else:
            tb.unpack(buf, dest, policy)
        assert os.stat(dest).st_mode & 0o7777 == expected
    os.chmod(src, 0o755)


def test_pack_leaves_out_entries_removed_while_it_runs(tmp_path: Path, monkeypatch) -> None:
    """A hook packs the rootfs of a container that runs on: a file (or a directory) that is gone by
    the time pack reaches it is left out, not an error."""
    root = tmp_path / "root"
    (root / "gone-dir").mkdir(parents=True)
    (root / "gone-dir" / "inside").write_text("x")
    for name in ("a", "gone-file", "opened-gone", "z"):
        (root / name).write_text(name)
    real_lstat, real_open, real_listdir = os.lstat, os.open, os.listdir

    def lstat(path, *a, **kw):
        if str(path).endswith("gone-file"):
            raise FileNotFoundError(path)
        return real_lstat(path, *a, **kw)

    def fake_open(path, *a, **kw):
        if str(path).endswith("opened-gone"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **kw)

    def listdir(path):
        if str(path).endswith("gone-dir"):
            raise FileNotFoundError(path)
        return real_listdir(path)

    monkeypatch.setattr(tarball.os, "lstat", lstat)
    monkeypatch.setattr(tarball.os, "listdir", listdir)
    monkeypatch.setattr(tarball.os, "open", fake_open)
    out = io.BytesIO()
    tarball.pack(root, out)
    monkeypatch.undo()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == ["a", "gone-dir", "z"]
        assert tar.extractfile("z").read() == b"z"


def test_pack_never_reads_through_a_file_swapped_for_a_symlink(tmp_path: Path, monkeypatch) -> None:
    """A running container replaces a file it owns by a link to a host file between the listing and
    the read: the host file's bytes must not end up in the checkpoint."""
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"host secret bytes")
    root = tmp_path / "root"
    root.mkdir()
    (root / "decoy").write_bytes(b"x" * len(b"host secret bytes"))
    (root / "swapped").symlink_to(secret)
    real_lstat = os.lstat

    def lstat(path, *a, **kw):  # what the listing saw: a regular file
        return real_lstat(root / "decoy") if str(path).endswith("swapped") else real_lstat(path, *a, **kw)

    monkeypatch.setattr(tarball.os, "lstat", lstat)
    out = io.BytesIO()
    tarball.pack(root, out)
    monkeypatch.undo()
    assert b"host secret bytes" not in out.getvalue()
    assert [m.name for m in members_of(out.getvalue())] == ["decoy"]
