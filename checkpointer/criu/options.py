"""The CRIU options a checkpoint was taken with; restore must use the matching ones."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# Printed in every log on hosts whose hard RLIMIT_NOFILE is low; it never explains a failure.
_HARMLESS = ("Can't setup RLIMIT_NOFILE for self",)


# How runc and podman both spell these options on their command lines.
_FLAGS = {"leave_running": "--leave-running", "tcp_established": "--tcp-established",
          "file_locks": "--file-locks", "ext_unix_sk": "--ext-unix-sk", "shell_job": "--shell-job"}


@dataclass(frozen=True, slots=True)
class CriuOptions:
    leave_running: bool = False
    tcp_established: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False
    shell_job: bool = False

    def to_json(self) -> dict[str, bool]:
        return {_camel(k): v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, obj: Any) -> CriuOptions:
        obj = obj if isinstance(obj, dict) else {}
        return cls(**{f.name: bool(obj.get(_camel(f.name), False)) for f in fields(cls)})

    @classmethod
    def from_flags(cls, is_set: Callable[[str], bool]) -> CriuOptions:
        """The options of a runtime command line; `is_set` tells whether a flag (named without its
        dashes, e.g. "leave-running") was given."""
        return cls(**{name: is_set(flag.lstrip("-")) for name, flag in _FLAGS.items()})

    def flags(self, without: tuple[str, ...] = ()) -> list[str]:
        """The options set here as runtime command-line flags, but for those named in `without`
        (options a runtime has no flag for)."""
        return [flag for name, flag in _FLAGS.items() if getattr(self, name) and name not in without]

    def for_restore(self) -> CriuOptions:
        return CriuOptions(tcp_established=self.tcp_established, file_locks=self.file_locks,
                           ext_unix_sk=self.ext_unix_sk, shell_job=self.shell_job)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def log_tail(log: Path, lines: int = 12) -> str:
    """The lines of a CRIU log that explain a failure: its errors, then its last lines."""
    try:
        return tail_of(log.read_text(errors="replace"), lines)
    except OSError:
        return ""


def tail_of(log_text: str, lines: int = 12) -> str:
    """The lines of a CRIU log's text that explain a failure: its errors, then its last lines."""
    text = log_text.splitlines()
    errors = [ln for ln in text if ("Error" in ln or "Warn" in ln) and not any(h in ln for h in _HARMLESS)]
    tail = [ln for ln in text[-lines:] if ln not in errors]
    return "\n".join(errors[-lines:] + tail)
