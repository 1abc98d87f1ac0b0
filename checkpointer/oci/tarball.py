"""Deterministic tar packing and a hostile-input-proof tar unpacker.

Packing sorts entries and drops user/group names, so the same content gives the same bytes; it
keeps file capabilities, user.* attributes and ACLs (oci/xattrs.py). Unpacking never follows a
link while writing, and refuses absolute names, `..`, devices, and links that would reach outside
the target (docs/security.md).
"""
from __future__ import annotations

import errno
import io
import logging
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Self

from ..errors import CorruptData
from . import xattrs

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20
# A long name, link target or set of extended attributes takes a few KiB; tarfile reads such a
# header whole into memory, so a bigger one is an archive bomb, not a file.
_MAX_HEADER = 16 << 20


@dataclass(frozen=True, slots=True)
class UnpackPolicy:
    """What an archive may contain. CRIU image layers allow only files and directories."""

    allow_symlinks: bool = False
    allow_hardlinks: bool = False
    allow_setuid: bool = False
    keep_owner: bool = False
    keep_xattrs: bool = False  # file capabilities also need allow_setuid: they grant privileges as setuid does
    allow_fifos: bool = False  # a named FIFO: no content, no target; CRIU reopens one by its path
    max_bytes: int = 1 << 40


CRIU_IMAGES = UnpackPolicy()
ROOTFS = UnpackPolicy(allow_symlinks=True, allow_hardlinks=True, allow_setuid=True, keep_owner=True,
                      keep_xattrs=True, allow_fifos=True)


def pack(root: Path, out: BinaryIO, *, names: Iterable[str] | None = None, zero_mtime: bool = True,
         include_root: bool = False) -> None:
    """Write a tar of `root` (or of the listed top-level `names` in it) to `out`, deterministically.
    `include_root` records `root`'s own mode, owner and mtime as a "." entry (a container's root
    directory: CRIU checks its mode on restore)."""
    root = Path(root)
    tops = sorted(names) if names is not None else sorted(p.name for p in root.iterdir())
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if include_root:
            _add(tar, root, ".", seen_inodes, zero_mtime)
        for top in tops:
            for rel in _walk(root, top):
                _add(tar, root, rel, seen_inodes, zero_mtime)


def _walk(root: Path, rel: str) -> Iterable[str]:
    yield rel
    path = root / rel
    if path.is_dir() and not path.is_symlink():
        try:
            children = sorted(os.listdir(path))
        except FileNotFoundError:  # removed meanwhile: see _add
            return
        for child in children:
            yield from _walk(root, f"{rel}/{child}")


def _add(tar: tarfile.TarFile, root: Path, rel: str, seen: dict[tuple[int, int], str], zero_mtime: bool) -> None:
    path = root / rel
    # An entry that is gone by the time it is reached is left out: a hook packs the rootfs of a
    # container that runs on (--leave-running), which may remove files meanwhile.
    try:
        # The root itself may be reached through a link (a hook packs /proc/PID/fd/N): follow that one.
        st = os.stat(path) if rel == "." else os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        _add_file(tar, path, rel, seen, zero_mtime)
        return
    info = _info(rel, st, zero_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.pax_headers = xattrs.to_pax(xattrs.read(path, follow_symlinks=rel == "."), tar.encoding, tar.errors)
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        try:
            info.linkname = os.readlink(path)
        except FileNotFoundError:
            return
        tar.addfile(info)
    elif stat.S_ISFIFO(st.st_mode):
        # A named FIFO in the rootfs must exist on the target: CRIU reopens it by its path.
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    # Sockets and device nodes are not content: CRIU binds listening sockets again, runtimes
    # recreate /dev, and the unpacker refuses devices anyway.


def _info(rel: str, st: os.stat_result, zero_mtime: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = 0 if zero_mtime else int(st.st_mtime)
    return info


def _add_file(tar: tarfile.TarFile, path: Path, rel: str, seen: dict[tuple[int, int], str], zero_mtime: bool) -> None:
    # Opened without following a link, and described by what was opened: a running container may
    # have swapped the file for a link (to a host file, say) since it was listed. A swap for
    # anything but a regular file is left out, as a removed file is.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if rel == "." else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # now a symlink
            return
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        info = _info(rel, st, zero_mtime)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            info.type = tarfile.LNKTYPE  # the attributes went with the first name of the inode
            info.linkname = seen[key]
            tar.addfile(info)
            return
        info.size = st.st_size
        info.pax_headers = xattrs.to_pax(xattrs.read(fd), tar.encoding, tar.errors)
        tar.addfile(info, f)
    seen[key] = rel


def _safe_name(name: str) -> PurePosixPath:
    if not name or "\0" in name:
        raise CorruptData(f"archive entry with an empty or NUL-containing name: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise CorruptData(f"archive entry with an absolute path: {name!r}")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise CorruptData(f"archive entry that climbs out with '..': {name!r}")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _ensure_parent(dest: Path, rel: PurePosixPath) -> Path:
    """Create the parent directories of `rel` under `dest`, refusing to pass through a symlink."""
    current = dest
    for part in rel.parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptData(f"archive entry {str(rel)!r} would be written through {current.name!r}, "
                              "which is not a directory")
    return current / rel.name


def _existing_file(dest: Path, rel: PurePosixPath, what: str) -> Path:
    """The regular file `rel` under `dest`, reached through real directories only (never a symlink)."""
    current = dest
    for part in rel.parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise CorruptData(f"{what}: {str(rel)!r} is not reached through directories of the archive")
    path = current / rel.name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CorruptData(f"{what}, which is not in the archive before it") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorruptData(f"{what}, which is not a regular file")
    return path


def _remove_existing(target: Path) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise CorruptData(f"archive entry would replace the directory {target}")
    os.unlink(target)


# The parts of tarfile used here that are not in its documented API, nor in typeshed: named once, here.
_EOF_HEADER: type[Exception] = vars(tarfile)["EOFHeaderError"]
_EMPTY_HEADER: type[Exception] = vars(tarfile)["EmptyHeaderError"]
_TRUNCATED_HEADER: type[Exception] = vars(tarfile)["TruncatedHeaderError"]
_INVALID_HEADER: type[Exception] = vars(tarfile)["InvalidHeaderError"]
_PROC_MEMBER: Callable[[tarfile.TarInfo, tarfile.TarFile], tarfile.TarInfo] = vars(tarfile.TarInfo)["_proc_member"]


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile quietly ends the archive at a missing, cut or damaged header after the first member;
    here those are errors, so a truncated or spliced archive does not unpack "successfully"."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _EOF_HEADER:
            raise  # a block of zeros: the end-of-archive marker
        except _EMPTY_HEADER:
            raise CorruptData("archive is truncated: it ends without an end-of-archive marker") from None
        except _TRUNCATED_HEADER:
            raise CorruptData("archive is truncated inside a header") from None
        except _INVALID_HEADER as exc:
            raise CorruptData(f"damaged archive: {exc}") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK) and self.size > _MAX_HEADER:
            raise CorruptData(f"archive has an extended header of {self.size} bytes, more than {_MAX_HEADER}")
        return _PROC_MEMBER(self, tarfile_)


# What a hostile or damaged archive (rather than the disk) makes the OS refuse.
_ARCHIVE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
                             errno.EMLINK, errno.EINVAL, errno.EOVERFLOW})
_MAX_ID = (1 << 32) - 2


def unpack(stream: BinaryIO, dest: Path, policy: UnpackPolicy = CRIU_IMAGES,
           on_bytes: Callable[[int], None] | None = None) -> None:
    """Unpack a tar stream into the existing directory `dest` under `policy`.

    Raises CorruptData for anything hostile or damaged; an OSError only for a disk problem."""
    dest = Path(dest)
    total = 0
    directories: dict[Path, tuple[tarfile.TarInfo, int, int]] = {}
    refused: list[str] = []  # attributes the filesystem cannot hold
    member: tarfile.TarInfo | None = None
    # A plain file on disk (a runtime's export archive) is read at random: each file's bytes go
    # straight from it to their target in the kernel. Through tarfile's stream mode they took
    # three copies in 10 KiB steps: a second per 512 MiB.
    source_fd = _plain_file(stream)
    try:
        with tarfile.open(fileobj=stream, mode="r|" if source_fd is None else "r:", tarinfo=_StrictTarInfo) as tar:
            for member in tar:
                # Extended attributes take room too (up to 64 KiB each).
                total += max(member.size, 0) + sum(len(v) for v in member.pax_headers.values())
                if total > policy.max_bytes:
                    raise CorruptData(f"archive unpacks to more than {policy.max_bytes} bytes")
                _unpack_member(tar, member, dest, policy, on_bytes, directories, refused, source_fd)
            member = None
            # Deepest first, so a directory made read-only does not stop its children's updates,
            # and after every child was written, so its mtime stays the archive's.
            for target, (dir_member, mode, _depth) in sorted(directories.items(), key=lambda kv: -kv[1][2]):
                member = dir_member
                _apply_dir_metadata(target, dir_member, mode, policy, _xattrs_of(tar, dir_member, policy), refused)
    except tarfile.TarError as exc:
        raise CorruptData(f"damaged archive: {exc}") from None
    except EOFError:
        raise CorruptData("archive is truncated") from None
    except (OverflowError, ValueError) as exc:
        where = f" entry {member.name!r}" if member is not None else ""
        raise CorruptData(f"archive{where} holds an impossible value: {exc}") from None
    except OSError as exc:
        if exc.errno not in _ARCHIVE_ERRNOS:
            raise
        where = f" entry {member.name!r}" if member is not None else ""
        raise CorruptData(f"archive{where} cannot be unpacked: {exc.strerror}") from None
    if refused:
        # Not fatal (a restore onto a filesystem without xattrs still runs), but never silent.
        log.warning("the filesystem of %s cannot hold %d extended attributes of the archive (first: %s); "
                    "they were left out", dest, len(refused), refused[0])


def _xattrs_of(tar: tarfile.TarFile, member: tarfile.TarInfo, policy: UnpackPolicy) -> dict[str, bytes]:
    """The attributes to set on `member`: none on a layer that may not hold them, no capabilities
    where setuid is not allowed or no root can set them."""
    if not policy.keep_xattrs or not member.pax_headers:
        return {}
    values = xattrs.from_pax(member.pax_headers, tar.encoding, tar.errors, what=member.name)
    if not (policy.allow_setuid and os.geteuid() == 0):
        values.pop(xattrs.CAPABILITY, None)
    return values


def _plain_file(stream: BinaryIO) -> int | None:
    """The descriptor of the regular file `stream` reads from its start, or None: a pipe, or a
    decompressing or verifying reader (whose every byte must pass through it; a GzipFile, say,
    has the fileno() of the compressed file under it)."""
    if not isinstance(stream, (io.BufferedReader, io.FileIO)):
        return None
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or stream.tell() != 0:
            return None
    except (OSError, io.UnsupportedOperation):
        return None
    return fd


def _copy_out(source_fd: int, out_fd: int, member: tarfile.TarInfo,
              on_bytes: Callable[[int], None] | None) -> None:
    """The member's bytes from the archive file into `out_fd`, inside the kernel."""
    done = 0
    while done < member.size:
        sent = os.sendfile(out_fd, source_fd, member.offset_data + done, min(_COPY_CHUNK, member.size - done))
        if sent == 0:
            raise CorruptData(f"archive is truncated inside {member.name!r}")
        done += sent
        if on_bytes:
            on_bytes(sent)


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, policy: UnpackPolicy,
                   on_bytes: Callable[[int], None] | None,
                   directories: dict[Path, tuple[tarfile.TarInfo, int, int]], refused: list[str],
                   source_fd: int | None = None) -> None:
    rel = _safe_name(member.name)
    attributes = _xattrs_of(tar, member, policy)  # checked for every entry, set on files and directories
    if rel == PurePosixPath("."):
        # The target's own metadata; only a layer that keeps owners (a rootfs) takes it.
        if member.isdir() and policy.keep_owner:
            directories.pop(dest, None)
            directories[dest] = (member, member.mode & 0o7777 & ~(stat.S_ISUID | stat.S_ISGID), 0)
        return
    mode = member.mode & 0o7777
    if mode & (stat.S_ISUID | stat.S_ISGID) and not policy.allow_setuid:
        raise CorruptData(f"archive entry {member.name!r} is setuid/setgid, which this layer may not hold")
    if policy.keep_owner and not (0 <= member.uid <= _MAX_ID and 0 <= member.gid <= _MAX_ID):
        raise CorruptData(f"archive entry {member.name!r} has an impossible owner {member.uid}:{member.gid}")
    target = _ensure_parent(dest, rel)
    if member.isdir():
        try:
            st = os.lstat(target)
            if not stat.S_ISDIR(st.st_mode):
                raise CorruptData(f"archive directory {member.name!r} collides with a non-directory")
        except FileNotFoundError:
            os.mkdir(target, 0o700)
        directories.pop(target, None)  # a repeated entry wins, and keeps its own place in the order
        directories[target] = (member, mode, len(rel.parts))
    elif member.isreg() and source_fd is not None:
        _remove_existing(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            _copy_out(source_fd, out.fileno(), member, on_bytes)
            _apply_fd_metadata(out.fileno(), member, mode, policy, attributes, refused)
    elif member.isreg():
        src = tar.extractfile(member)
        if src is None:  # never for a regular file
            raise CorruptData(f"archive member {member.name!r} has no data")
        _remove_existing(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            remaining = member.size
            while remaining > 0:
                chunk = src.read(min(_COPY_CHUNK, remaining))
                if not chunk:
                    raise CorruptData(f"archive is truncated inside {member.name!r}")
                out.write(chunk)
                remaining -= len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            out.flush()
            _apply_fd_metadata(out.fileno(), member, mode, policy, attributes, refused)
    elif member.issym():
        if not policy.allow_symlinks:
            raise CorruptData(f"archive entry {member.name!r} is a symlink, which this layer may not hold")
        if not member.linkname or "\0" in member.linkname:
            raise CorruptData(f"archive symlink {member.name!r} has an empty or NUL-containing target")
        _remove_existing(target)
        # The target is kept as written: it is resolved inside the container's root, and nothing
        # here ever writes through it (_ensure_parent and _existing_file refuse to). A link's own
        # attributes are not set: Linux allows no user.* on a link, and none of the kept ones mean
        # anything there.
        os.symlink(member.linkname, target)
        if policy.keep_owner and os.geteuid() == 0:
            os.chown(target, member.uid, member.gid, follow_symlinks=False)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    elif member.islnk():
        if not policy.allow_hardlinks:
            raise CorruptData(f"archive entry {member.name!r} is a hard link, which this layer may not hold")
        what = f"hard link {member.name!r} points at {member.linkname!r}"
        link_rel = _safe_name(member.linkname)
        if link_rel == rel:
            raise CorruptData(f"{what}, which is itself")
        source = _existing_file(dest, link_rel, what)
        _remove_existing(target)
        os.link(source, target, follow_symlinks=False)
    elif member.isfifo() and policy.allow_fifos:
        _remove_existing(target)
        os.mkfifo(target, 0o600)
        # Not a link (mkfifo made it just now, in a directory only this unpack writes to).
        if policy.keep_owner and os.geteuid() == 0:
            os.chown(target, member.uid, member.gid, follow_symlinks=False)
        os.chmod(target, mode & 0o1777)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    else:
        raise CorruptData(f"archive entry {member.name!r} is a device, fifo or other special file "
                          "this layer may not hold")


def _apply_fd_metadata(fd: int, member: tarfile.TarInfo, mode: int, policy: UnpackPolicy,
                       attributes: dict[str, bytes], refused: list[str]) -> None:
    if policy.keep_owner and os.geteuid() == 0:
        os.fchown(fd, member.uid, member.gid)  # before chmod: chown clears setuid bits
    os.fchmod(fd, mode)
    if attributes:  # after chown, which clears file capabilities
        refused += (f"{name} on {member.name}" for name in xattrs.apply(fd, attributes))
    os.utime(fd, (member.mtime, member.mtime))


def _apply_dir_metadata(target: Path, member: tarfile.TarInfo, mode: int, policy: UnpackPolicy,
                        attributes: dict[str, bytes], refused: list[str]) -> None:
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _apply_fd_metadata(fd, member, mode, policy, attributes, refused)
    finally:
        os.close(fd)
