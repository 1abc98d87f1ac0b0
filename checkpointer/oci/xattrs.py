"""Extended attributes of a root filesystem in its tar: PAX records `SCHILY.xattr.NAME`, as GNU tar
and Go's archive/tar write them. Which ones a checkpoint keeps, reading them and setting them again.

Kept: `security.capability` (file capabilities: a `ping` with cap_net_raw fails without it),
`user.*` (the application's own data) and `system.posix_acl_access`/`_default` (permissions as
much as the mode is). Left out on purpose, when packing and when unpacking:
  - `trusted.*`: for the host's privileged daemons (overlayfs keeps its whiteouts and redirects
    there); a container never sees them, and a planted one could change what a restore host's
    overlay mount shows.
  - `security.selinux`, `.SMACK64*`, `.apparmor`: labels of the source host's policy; the target
    host labels the container by its own.
  - `security.ima`, `security.evm`: signatures bound to the source host's keys.
  - any other name: its meaning is unknown, so it is not written as root.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Mapping

from ..errors import CorruptData

PAX_PREFIX = "SCHILY.xattr."
CAPABILITY = "security.capability"
_ACLS = frozenset({"system.posix_acl_access", "system.posix_acl_default"})
NAME_MAX = 255          # XATTR_NAME_MAX
SIZE_MAX = 64 * 1024    # XATTR_SIZE_MAX
# The filesystem cannot hold the attribute (no xattr support, a smaller size limit): not the archive's fault.
UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.E2BIG})


def kept(name: str) -> bool:
    return name == CAPABILITY or name in _ACLS or (name.startswith("user.") and len(name) > len("user."))


def read(target: int | str | os.PathLike[str], *, follow_symlinks: bool = False) -> dict[str, bytes]:
    """The kept attributes of an open file descriptor or a path (a link itself unless `follow_symlinks`),
    sorted by name so a tar of them is deterministic."""
    kw = {} if isinstance(target, int) else {"follow_symlinks": follow_symlinks}
    try:
        names = os.listxattr(target, **kw)
    except OSError as exc:
        if exc.errno in UNSUPPORTED or exc.errno == errno.ENOENT:
            return {}
        raise
    values = {}
    for name in sorted(n for n in names if kept(n)):
        try:
            values[name] = os.getxattr(target, name, **kw)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOENT, *UNSUPPORTED):  # removed meanwhile
                raise
    return values


def to_pax(values: Mapping[str, bytes], encoding: str, errors: str) -> dict[str, str]:
    """PAX records for `values`; tarfile writes a str back as the bytes it was decoded from."""
    return {PAX_PREFIX + name: value.decode(encoding, errors) for name, value in values.items()}


def from_pax(pax_headers: Mapping[str, str], encoding: str, errors: str, *, what: str) -> dict[str, bytes]:
    """The kept attributes of an archive member; CorruptData for one no filesystem could hold."""
    values = {}
    for key, text in pax_headers.items():
        if not key.startswith(PAX_PREFIX):
            continue
        name = key[len(PAX_PREFIX):]
        value = text.encode(encoding, errors)
        if not name or len(name.encode(encoding, errors)) > NAME_MAX or "\0" in name or name.endswith("."):
            raise CorruptData(f"archive entry {what!r} has an impossible extended attribute name {name[:80]!r}")
        if len(value) > SIZE_MAX:
            raise CorruptData(f"archive entry {what!r} has an extended attribute {name!r} of {len(value)} bytes, "
                              f"more than {SIZE_MAX}")
        if kept(name):
            values[name] = value
    return values


def apply(fd: int, values: Mapping[str, bytes]) -> list[str]:
    """Set `values` on the open file `fd`; returns the names its filesystem could not hold."""
    refused = []
    for name, value in values.items():
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:
                raise
            refused.append(name)
    return refused
