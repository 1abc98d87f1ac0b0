"""The registry client: push and pull OCI artifacts, list referrers, log in and out.

    reg = Registry(host, insecure=False, ca_dir=None, credentials=None, timeout=60)
    push(layout, manifest_desc, dest, registry=reg, jobs=4, on_progress=None) -> Descriptor
    pull(src, layout, registry=reg, jobs=4, on_progress=None, platform=None) -> Descriptor
    list_referrers(ref_with_digest, registry=reg, artifact_type=None) -> list[Descriptor]
    login(host, user, password, config_path=None) -> LoginResult   (where they went, where they are used from)
    logout(host, config_path=None) -> LogoutResult

Never prints; logs through `logging` (never credentials or tokens). Errors are ckpt's own:
RegistryError (status, codes), AuthError, Unreachable, CorruptData, NotFound.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..retry import RetryPolicy
from . import credentials as _credentials
from .client import Registry
from .credentials import Credentials
from .pull import pull
from .push import BlobUploader, push
from .referrers import list_referrers
from .transport import RegistryNotFound

__all__ = ["BlobUploader", "Registry", "Credentials", "RetryPolicy", "RegistryNotFound", "push", "pull",
           "list_referrers", "login", "logout", "LoginResult", "LogoutResult"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    registry: str
    stored_in: str  # a file, or a credential helper and the file that names it
    used_from: str | None  # where the lookup now takes this registry's credentials from


@dataclass(frozen=True, slots=True)
class LogoutResult:
    registry: str
    removed_from: str | None  # None: nothing was stored there
    used_from: str | None  # credentials still stored elsewhere, which the lookup then uses


def _used_from(host: str, config_path: Path | None) -> str | None:
    found = _credentials.find(host, config_path=config_path)
    return found.where if found else None


def login(host: str, user: str, password: str, *, config_path: Path | None = None, insecure: bool = False,
          ca_dir: Path | str | None = None, timeout: float = 30.0) -> LoginResult:
    """Check `user`/`password` against the registry at `host` (AuthError if refused), then store
    them where the lookup reads first (credentials.login_file(), or its credential helper)."""
    creds = Credentials(user, password)
    with Registry(host, insecure=insecure, ca_dir=ca_dir, credentials=creds, timeout=timeout) as reg:
        reg.ping()
    stored_in = _credentials.store(host, creds, config_path=config_path)
    return LoginResult(host, stored_in, _used_from(host, None))


def logout(host: str, *, config_path: Path | None = None) -> LogoutResult:
    """Forget the credentials for `host` stored where login puts them."""
    path = Path(config_path) if config_path else _credentials.login_file()
    removed = _credentials.erase(host, config_path=config_path)
    return LogoutResult(host, str(path) if removed else None, _used_from(host, None))
