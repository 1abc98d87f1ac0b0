"""The registry client: push and pull OCI artifacts, list referrers, log in and out.

    reg = Registry(host, insecure=False, ca_dir=None, credentials=None, timeout=60)
    push(layout, manifest_desc, dest, registry=reg, jobs=4, on_progress=None) -> Descriptor
    pull(src, layout, registry=reg, jobs=4, on_progress=None, platform=None) -> Descriptor
    list_referrers(ref_with_digest, registry=reg, artifact_type=None) -> list[Descriptor]
    login(host, user, password, config_path=None) -> str     (where the credentials went)
    logout(host, config_path=None) -> bool

Never prints; logs through `logging` (never credentials or tokens). Errors are ckpt's own:
RegistryError (status, codes), AuthError, Unreachable, CorruptData, NotFound.
"""
from __future__ import annotations

from pathlib import Path

from . import credentials as _credentials
from .client import Registry
from .credentials import Credentials
from .pull import pull
from .push import BlobUploader, push
from .referrers import list_referrers
from .transport import RegistryNotFound, RetryPolicy

__all__ = ["BlobUploader", "Registry", "Credentials", "RetryPolicy", "RegistryNotFound", "push", "pull", "list_referrers",
           "login", "logout"]


def login(host: str, user: str, password: str, *, config_path: Path | None = None, insecure: bool = False,
          ca_dir: Path | str | None = None, timeout: float = 30.0) -> str:
    """Check `user`/`password` against the registry at `host` (AuthError if refused), then store
    them in docker config.json format (or its credential helper). Returns where they were stored."""
    creds = Credentials(user, password)
    with Registry(host, insecure=insecure, ca_dir=ca_dir, credentials=creds, timeout=timeout) as reg:
        reg.ping()
    return _credentials.store(host, creds, config_path=config_path)


def logout(host: str, *, config_path: Path | None = None) -> bool:
    """Forget the stored credentials for `host`; True if there were any."""
    return _credentials.erase(host, config_path=config_path)
