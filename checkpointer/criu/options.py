"""The CRIU options a checkpoint was taken with; restore must use the matching ones."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# Printed in every log on hosts whose hard RLIMIT_NOFILE is low; it never explains a failure.
_HARMLESS = ("Can't setup RLIMIT_NOFILE for self",)


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
    def from_json(cls, obj: Any) -> "CriuOptions":
        obj = obj if isinstance(obj, dict) else {}
        return cls(**{f.name: bool(obj.get(_camel(f.name), False)) for f in fields(cls)})

    def for_restore(self) -> "CriuOptions":
        return CriuOptions(tcp_established=self.tcp_established, file_locks=self.file_locks,
                           ext_unix_sk=self.ext_unix_sk, shell_job=self.shell_job)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def log_tail(log: Path, lines: int = 12) -> str:
    """The lines of a CRIU log that explain a failure: its errors, then its last lines."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in text if ("Error" in ln or "Warn" in ln) and not any(h in ln for h in _HARMLESS)]
    tail = [ln for ln in text[-lines:] if ln not in errors]
    return "\n".join(errors[-lines:] + tail)
