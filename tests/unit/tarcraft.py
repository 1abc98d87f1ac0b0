"""Helpers for the tar tests: build archives member by member, and a sandbox that notices any
write outside the directory an archive is unpacked into."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from checkpointer.oci.tarball import pack


def packed(root: Path, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    pack(root, buf, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def members_of(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def entry(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", linkname: str = "",
          mode: int | None = None, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def craft(*entries: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (not following links) with its inode and mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_ino, st.st_mode)
    return out


class Sandbox:
    """tmp/dest is where archives are unpacked; tmp/outside and tmp/victim must never change."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dest = base / "dest"
        self.outside = base / "outside"
        self.victim = base / "victim"
        for d in (self.dest, self.outside, self.victim):
            d.mkdir()
        (self.victim / "secret").write_bytes(b"do not touch")
        self.victim_before = snapshot(self.victim)
        self.secret_ino = os.lstat(self.victim / "secret").st_ino

    def assert_untouched(self) -> None:
        assert sorted(os.listdir(self.base)) == ["dest", "outside", "victim"]
        assert os.listdir(self.outside) == []
        assert snapshot(self.victim) == self.victim_before
        assert (self.victim / "secret").read_bytes() == b"do not touch"
        assert os.lstat(self.victim / "secret").st_nlink == 1
        for _, (ino, _mode) in snapshot(self.dest).items():
            assert ino != self.secret_ino
