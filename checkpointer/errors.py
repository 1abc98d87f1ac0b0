"""The one exception tree of ckpt; every class has a fixed process exit code."""
from __future__ import annotations

import errno
from typing import ClassVar


class CkptError(Exception):
    """Root of every error ckpt raises on purpose. `hint` tells the user what to do next."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CkptError):
    """The command line or a reference makes no sense."""

    exit_code = 2


class NotFound(CkptError):
    """A container, checkpoint, tag or blob that was named does not exist."""

    exit_code = 3


class AlreadyExists(CkptError):
    """The target name is taken (a container or a tag that must not be overwritten)."""

    exit_code = 4


class RuntimeFailed(CkptError):
    """The container runtime (runc, podman) refused or failed; `output` holds what it said."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, output: str = "") -> None:
        super().__init__(message, hint=hint)
        self.output = output


class CriuFailed(RuntimeFailed):
    """CRIU failed to dump or restore; `log_tail` holds the lines of its log that explain why."""

    exit_code = 6

    def __init__(self, message: str, *, hint: str | None = None, output: str = "",
                 log_tail: str = "") -> None:
        super().__init__(message, hint=hint, output=output)
        self.log_tail = log_tail


class IncompatibleHost(CkptError):
    """This host cannot run the checkpoint (architecture, CPU features, CRIU, kernel)."""

    exit_code = 7


class CorruptData(CkptError):
    """A blob, manifest or archive is damaged, truncated, hostile or not what it claims to be."""

    exit_code = 8


class RegistryError(CkptError):
    """The registry answered with an error; `status` and `codes` are what it said."""

    exit_code = 9

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.codes = codes


class AuthError(RegistryError):
    """Credentials are missing or wrong, or access is denied."""

    exit_code = 10


class Unreachable(RegistryError):
    """The registry could not be reached at all (DNS, connection refused, TLS)."""

    exit_code = 11


class MissingDependency(CkptError):
    """A tool or library ckpt needs is not installed (CRIU, runc, pycriu)."""

    exit_code = 12


class StorageError(CkptError):
    """The local disk refused a write or read (full, read-only, permissions)."""

    exit_code = 13


class Busy(CkptError):
    """Another ckpt is saving or restoring the same container right now."""

    exit_code = 14


class Interrupted(CkptError):
    """The user interrupted the operation; everything it had started was rolled back."""

    exit_code = 130


EXIT_CODES: dict[str, int] = {cls.__name__: cls.exit_code for cls in (
    CkptError, UsageError, NotFound, AlreadyExists, RuntimeFailed, CriuFailed, IncompatibleHost,
    CorruptData, RegistryError, AuthError, Unreachable, MissingDependency, StorageError, Busy, Interrupted)}


def disk_error(what: str, exc: OSError) -> StorageError:
    """An OSError of the local disk as a StorageError that says what was being done."""
    return StorageError(f"{what}: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})",
                        hint="free some space or point CKPT_HOME at a bigger disk"
                        if exc.errno == errno.ENOSPC else None)


def as_ckpt_error(what: str, exc: Exception) -> CkptError:
    """Any exception as ckpt's own, once, where it leaves a module: an OSError as a disk error, one
    of ckpt's as it is, anything else as a CkptError naming it."""
    if isinstance(exc, CkptError):
        return exc
    if isinstance(exc, OSError):
        return disk_error(what, exc)
    return CkptError(f"{what}: {exc!r}")
