"""The hooks' settings: the config file `ckpt hooks install` writes, plus environment overrides.

The file is JSON with `dev.ckpt.hooks.*` keys (keys.py). The action script and the publisher run
with the runtime's environment, so everything they need is written down here at install time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..porcelain.home import default_home
from . import keys

DEFAULT_CONFIG_DIR = Path("/etc/ckpt")
CONFIG_NAME = "hooks.json"
DEFAULT_RETRY_DELAYS = (5.0, 30.0, 120.0)


def default_config_path() -> Path:
    return Path(os.environ.get(keys.ENV_CONFIG) or DEFAULT_CONFIG_DIR / CONFIG_NAME)


@dataclass(frozen=True, slots=True)
class HookSettings:
    home: Path
    spool: Path
    python: str = ""
    allow: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    ca_dir: Path | None = None
    docker_config: Path | None = None
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    deadline: float = 20.0
    keep_published: int = 100
    installed: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the file these came from; None when there is none

    @classmethod
    def load(cls, path: Path | None = None) -> HookSettings:
        """Settings from `path` (default: $CKPT_HOOKS_CONFIG or /etc/ckpt/hooks.json); defaults
        for whatever the file does not say, and for everything when there is no file."""
        path = Path(path) if path else default_config_path()
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            obj, source = {}, None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the hooks config {path}: {exc}",
                             hint="run `ckpt hooks install` again to rewrite it") from None
        else:
            source = path
        if not isinstance(obj, dict):
            raise UsageError(f"the hooks config {path} is not a JSON object")
        return cls.from_json(obj, source=source)

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, source: Path | None = None) -> HookSettings:
        try:
            home = Path(obj.get(keys.CFG_HOME) or default_home())
            spool = os.environ.get(keys.ENV_SPOOL) or obj.get(keys.CFG_SPOOL) or home / "spool"
            return cls(
                home=home, spool=Path(spool), python=str(obj.get(keys.CFG_PYTHON) or ""),
                allow=tuple(str(a) for a in obj.get(keys.CFG_ALLOW) or ()),
                insecure_registries=tuple(str(h) for h in obj.get(keys.CFG_INSECURE) or ()),
                ca_dir=Path(obj[keys.CFG_CA_DIR]) if obj.get(keys.CFG_CA_DIR) else None,
                docker_config=Path(obj[keys.CFG_DOCKER_CONFIG]) if obj.get(keys.CFG_DOCKER_CONFIG) else None,
                retry_delays=tuple(float(d) for d in obj.get(keys.CFG_RETRY_DELAYS, DEFAULT_RETRY_DELAYS)),
                deadline=float(obj.get(keys.CFG_DEADLINE, 20.0)),
                keep_published=int(obj.get(keys.CFG_KEEP, 100)),
                installed=dict(obj.get(keys.CFG_INSTALLED) or {}), source=source)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the hooks config {source or ''} has a bad value: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            keys.CFG_PYTHON: self.python, keys.CFG_HOME: str(self.home), keys.CFG_SPOOL: str(self.spool),
            keys.CFG_ALLOW: list(self.allow), keys.CFG_INSECURE: list(self.insecure_registries),
            keys.CFG_RETRY_DELAYS: list(self.retry_delays), keys.CFG_DEADLINE: self.deadline,
            keys.CFG_KEEP: self.keep_published,
        }
        if self.ca_dir:
            out[keys.CFG_CA_DIR] = str(self.ca_dir)
        if self.docker_config:
            out[keys.CFG_DOCKER_CONFIG] = str(self.docker_config)
        if self.installed:
            out[keys.CFG_INSTALLED] = self.installed
        return out

    def insecure(self, host: str) -> bool:
        return host in self.insecure_registries
