"""Extended attributes in tars: file capabilities, user.* attributes and POSIX ACLs survive a pack and
an unpack of a root filesystem; what has no business in a checkpoint is neither packed nor applied."""
from __future__ import annotations

import io
import os
import struct
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from checkpointer.errors import CorruptData
from checkpointer.oci.tarball import CRIU_IMAGES, ROOTFS, unpack
from unit.tarcraft import Sandbox, craft, entry, members_of, packed

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (file capabilities, chown)")

# `setcap cap_net_raw+ep`: VFS_CAP_REVISION_2, effective, permitted = 1 << CAP_NET_RAW (13).
CAP_NET_RAW_EP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
XATTR = "SCHILY.xattr."


def acl(*entries: tuple[int, int, int]) -> bytes:
    """A system.posix_acl_* value: version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


# user::rw-, user:1234:r--, group::r--, mask::r--, other::---
ACL_1234 = acl((0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF))


def xattrs_of(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}


def pax_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    return {k[len(XATTR):]: v.encode("utf-8", "surrogateescape")
            for k, v in member.pax_headers.items() if k.startswith(XATTR)}


def tree(root: Path) -> Path:
    root.mkdir()
    (root / "bin").mkdir()
    (root / "bin" / "ping").write_bytes(b"\x7fELF pretend")
    (root / "bin" / "ping").chmod(0o755)
    (root / "data").write_bytes(b"data")
    os.setxattr(root / "data", "user.origin", b"made-by-test\xff\x00binary")
    os.setxattr(root / "data", "user.a", b"first")
    os.setxattr(root / "bin", "user.dir", b"on a directory")
    (root / "link").symlink_to("data")
    return root


def test_pack_records_user_attributes_sorted_and_deterministically(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    data = packed(root)
    members = {m.name: m for m in members_of(data)}
    assert pax_xattrs(members["data"]) == {"user.a": b"first", "user.origin": b"made-by-test\xff\x00binary"}
    assert list(pax_xattrs(members["data"])) == ["user.a", "user.origin"]
    assert pax_xattrs(members["bin"]) == {"user.dir": b"on a directory"}
    assert pax_xattrs(members["link"]) == {}
    assert packed(root) == data
    twin = tree(tmp_path / "twin")
    assert packed(twin) == data


@needs_root
def test_pack_records_file_capabilities(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    os.setxattr(root / "bin" / "ping", "security.capability", CAP_NET_RAW_EP)
    members = {m.name: m for m in members_of(packed(root))}
    assert pax_xattrs(members["bin/ping"]) == {"security.capability": CAP_NET_RAW_EP}


@needs_root
def test_pack_leaves_out_host_only_attributes(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    os.setxattr(root / "data", "trusted.overlay.opaque", b"y")
    members = {m.name: m for m in members_of(packed(root))}
    assert "trusted.overlay.opaque" not in pax_xattrs(members["data"])
    assert "user.a" in pax_xattrs(members["data"])


@needs_root
def test_round_trip_rootfs_keeps_capabilities_user_attributes_and_acls(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    ping = root / "bin" / "ping"
    os.chown(ping, 1000, 1000)  # unpacking chowns, which clears capabilities: they must come after
    os.setxattr(ping, "security.capability", CAP_NET_RAW_EP)
    os.setxattr(root / "data", "system.posix_acl_access", ACL_1234)
    out = tmp_path / "out"
    out.mkdir()
    unpack(io.BytesIO(packed(root)), out, ROOTFS)
    assert xattrs_of(out / "bin" / "ping") == {"security.capability": CAP_NET_RAW_EP}
    assert os.stat(out / "bin" / "ping").st_uid == 1000
    restored = xattrs_of(out / "data")
    assert restored["user.origin"] == b"made-by-test\xff\x00binary" and restored["user.a"] == b"first"
    assert restored["system.posix_acl_access"] == ACL_1234
    assert xattrs_of(out / "bin") == {"user.dir": b"on a directory"}


def test_round_trip_rootfs_keeps_user_attributes(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    out = tmp_path / "out"
    out.mkdir()
    unpack(io.BytesIO(packed(root)), out, ROOTFS)
    assert xattrs_of(out / "data") == {"user.a": b"first", "user.origin": b"made-by-test\xff\x00binary"}


def _with_xattrs(name: str, kind: bytes = tarfile.REGTYPE, **values: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info, data = entry(name, kind, data=b"x" if kind == tarfile.REGTYPE else b"",
                       linkname="" if kind != tarfile.SYMTYPE else "../victim/secret")
    info.pax_headers = {XATTR + k: v.decode("utf-8", "surrogateescape") for k, v in values.items()}
    return info, data


def test_criu_image_layers_take_no_attributes(box: Sandbox) -> None:
    archive = craft(_with_xattrs("f", **{"user.x": b"1", "security.capability": CAP_NET_RAW_EP}))
    unpack(io.BytesIO(archive), box.dest, CRIU_IMAGES)
    assert xattrs_of(box.dest / "f") == {}


@needs_root
def test_namespaces_without_meaning_in_a_container_are_not_applied(box: Sandbox) -> None:
    archive = craft(_with_xattrs("f", **{"trusted.overlay.opaque": b"y", "security.selinux": b"system_u:x",
                                         "security.ima": b"\x03sig", "system.nfs4_acl": b"\0",
                                         "user.kept": b"yes"}))
    unpack(io.BytesIO(archive), box.dest, ROOTFS)
    assert xattrs_of(box.dest / "f") == {"user.kept": b"yes"}
    box.assert_untouched()


def test_attributes_on_a_symlink_never_reach_its_target(box: Sandbox) -> None:
    archive = craft(_with_xattrs("l", tarfile.SYMTYPE, **{"user.x": b"1"}))
    unpack(io.BytesIO(archive), box.dest, ROOTFS)
    assert (box.dest / "l").is_symlink()
    assert xattrs_of(box.victim / "secret") == {}
    box.assert_untouched()


@pytest.mark.parametrize("name, value", [
    ("user." + "n" * 300, b"1"),        # longer than a name may be (XATTR_NAME_MAX)
    ("user.big", b"v" * (64 * 1024 + 1)),  # longer than a value may be (XATTR_SIZE_MAX)
    ("user.", b"1"),                    # a namespace without a name
])
def test_impossible_attributes_are_refused(box: Sandbox, name: str, value: bytes) -> None:
    with pytest.raises(CorruptData):
        unpack(io.BytesIO(craft(_with_xattrs("f", **{name: value}))), box.dest, ROOTFS)
    box.assert_untouched()


def test_attribute_bytes_count_towards_the_size_limit(box: Sandbox) -> None:
    members = [_with_xattrs(f"f{i}", **{"user.pad": b"p" * 3000}) for i in range(5)]
    with pytest.raises(CorruptData, match="more than"):
        unpack(io.BytesIO(craft(*members)), box.dest, replace(ROOTFS, max_bytes=10_000))


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


class _Endless(io.RawIOBase):
    """A tar stream: `head`, then as many `a` bytes as anyone reads; counts what was read."""

    def __init__(self, head: bytes) -> None:
        self.head, self.read_total = head, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001
        n = len(buf)
        start = self.read_total
        chunk = (self.head[start:start + n] if start < len(self.head) else b"")
        chunk += b"a" * (n - len(chunk))
        buf[:n] = chunk
        self.read_total += n
        return n


def test_a_huge_extended_header_is_refused_before_it_is_read(box: Sandbox) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 30  # "1 GiB of attributes and long names"
    stream = _Endless(info.tobuf(tarfile.USTAR_FORMAT))
    with pytest.raises(CorruptData, match="extended header"):
        unpack(io.BufferedReader(stream), box.dest, ROOTFS)
    assert stream.read_total < 1 << 20
