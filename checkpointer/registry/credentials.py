"""Where registry credentials come from: docker's config.json (auths, credsStore, credHelpers) and
the containers `auth.json`, plus `docker-credential-<x>` helpers.

Lookup order for a host (the first that has an entry wins):
  1. `$REGISTRY_AUTH_FILE` (containers auth.json, set on purpose by the user)
  2. docker config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
     (inside it: `credHelpers[host]`, then `credsStore`, then `auths[host]`)
  3. `${XDG_RUNTIME_DIR}/containers/auth.json`, then `~/.config/containers/auth.json`

`ckpt login` writes to the first of these files (login_file()): `$REGISTRY_AUTH_FILE` when it is
set, as `podman login` does, else the docker config. So what it stored is what is used, and
never an older entry in a file read before it.

Secrets never reach a log line or a repr.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import AuthError

log = logging.getLogger(__name__)

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
TOKEN_USERNAME = "<token>"  # a helper's Username meaning "Secret is an identity (refresh) token"
HELPER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token)

    def __repr__(self) -> str:  # never show secrets, even in tracebacks
        kind = "anonymous" if self.anonymous else "identity-token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind})"


ANONYMOUS = Credentials()


def config_key(host: str) -> str:
    """The key docker uses for `host` in config.json (Docker Hub has its historic URL)."""
    return DOCKER_HUB_KEY if normalize_host(host) in _HUB_ALIASES else normalize_host(host)


def normalize_host(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0].lower()


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def auth_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The files the lookup reads, in its order."""
    env = os.environ if env is None else env
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    files.append(docker_config_path(env))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path.home() / ".config" / "containers" / "auth.json")
    return files


def login_file(env: Mapping[str, str] | None = None) -> Path:
    """Where login stores and logout erases: the file the lookup reads first."""
    return auth_files(env)[0]


@dataclass(frozen=True, slots=True)
class Found:
    """Credentials and where the lookup took them from."""

    credentials: Credentials
    path: Path
    helper: str | None = None

    @property
    def where(self) -> str:
        return f"credential helper docker-credential-{self.helper} (named in {self.path})" if self.helper \
            else str(self.path)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    try:
        obj = json.loads(data)
    except ValueError:
        raise AuthError(f"{path} is not valid JSON", hint="fix or remove that file") from None
    return obj if isinstance(obj, dict) else {}


def _matching(entries: object, host: str) -> object:
    """The entry of a host-keyed map whose key names `host` (keys may be URLs)."""
    if not isinstance(entries, dict):
        return None
    want = normalize_host(config_key(host))
    for key, value in entries.items():
        if isinstance(key, str) and normalize_host(config_key(key)) == want:
            return value
    return None


def _from_auth_entry(entry: object, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or ""
    auth = entry.get("auth")
    user, password = entry.get("username") or "", entry.get("password") or ""
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthError(f"{path}: a stored `auth` value is not base64 of user:password",
                            hint="run `ckpt login HOST` again")
    creds = Credentials(str(user), str(password), str(token))
    return None if creds.anonymous else creds


def run_helper(helper: str, action: str, payload: str) -> str:
    """Run `docker-credential-<helper> <action>` with `payload` on stdin; return its stdout."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, action], input=payload.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise AuthError(f"credential helper {program} is not installed",
                        hint="install it, or remove it from credsStore/credHelpers in your docker config") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} did not answer within {HELPER_TIMEOUT:.0f} s") from None
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        message = (out.strip() or done.stderr.decode(errors="replace").strip())[:300]
        if "credentials not found" in message.lower():
            raise LookupError(message)
        raise AuthError(f"credential helper {program} {action} failed: {message}")
    return out


def _from_helper(helper: str, host: str) -> Credentials | None:
    try:
        out = run_helper(helper, "get", config_key(host))
    except LookupError:
        return None
    try:
        obj = json.loads(out)
        user, secret = obj.get("Username") or "", obj.get("Secret") or ""
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper docker-credential-{helper} returned something that is not JSON") from None
    if user == TOKEN_USERNAME:
        return Credentials(identity_token=str(secret))
    creds = Credentials(str(user), str(secret))
    return None if creds.anonymous else creds


def _from_config(cfg: dict[str, Any], host: str, path: Path) -> Found | None:
    helper = _matching(cfg.get("credHelpers"), host)
    if isinstance(helper, str) and helper:
        creds = _from_helper(helper, host)
        return Found(creds, path, helper) if creds else None
    store = cfg.get("credsStore")
    if isinstance(store, str) and store:
        creds = _from_helper(store, host)
        if creds:
            return Found(creds, path, store)
    creds = _from_auth_entry(_matching(cfg.get("auths"), host), path)
    return Found(creds, path) if creds else None


def find(host: str, *, config_path: Path | None = None, env: Mapping[str, str] | None = None) -> Found | None:
    """The credentials the lookup uses for `host` and where they are; None if there are none.
    With `config_path`, read only that file."""
    for path in [Path(config_path)] if config_path else auth_files(env):
        found = _from_config(_read_config(path), host, path)
        if found:
            log.debug("credentials for %s found via %s", host, found.where)
            return found
    return None


def lookup(host: str, *, config_path: Path | None = None,
           env: Mapping[str, str] | None = None) -> Credentials | None:
    """Stored credentials for `host`, or None. With `config_path`, read only that file."""
    found = find(host, config_path=config_path, env=env)
    return found.credentials if found else None


# -- writing (login / logout) ---------------------------------------------------------------------

def _write_config(path: Path, cfg: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic.write_bytes(atomic.own_link_target(path), (json.dumps(cfg, indent="\t") + "\n").encode(), mode=0o600)


def _helper_for(cfg: dict[str, Any], host: str) -> str | None:
    helper = _matching(cfg.get("credHelpers"), host)
    if isinstance(helper, str) and helper:
        return helper
    store = cfg.get("credsStore")
    return store if isinstance(store, str) and store else None


def _drop_entries(entries: dict[str, Any], host: str) -> bool:
    want = normalize_host(config_key(host))
    gone = [k for k in entries if normalize_host(config_key(k)) == want]
    for key in gone:
        del entries[key]
    return bool(gone)


def store(host: str, creds: Credentials, *, config_path: Path | None = None,
          env: Mapping[str, str] | None = None) -> str:
    """Save `creds` for `host` in login_file() (docker config.json format) or the credential helper
    it names. Returns where they went, as Found.where says it."""
    path = Path(config_path) if config_path else login_file(env)
    cfg = _read_config(path)
    key = config_key(host)
    auths = cfg.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise AuthError(f"{path}: `auths` is not an object", hint="fix or remove that file")
    helper = _helper_for(cfg, host)
    if helper:
        user, secret = ((TOKEN_USERNAME, creds.identity_token) if creds.identity_token
                        else (creds.username, creds.password))
        run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
        _drop_entries(auths, host)
        auths[key] = {}
        where = Found(creds, path, helper).where
    else:
        _drop_entries(auths, host)
        entry: dict[str, str] = {}
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
        else:
            entry["auth"] = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        auths[key] = entry
        where = str(path)
    _write_config(path, cfg)
    return where


def erase(host: str, *, config_path: Path | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Forget the credentials for `host` in login_file() (and its helper); True if there were any."""
    path = Path(config_path) if config_path else login_file(env)
    cfg = _read_config(path)
    removed = False
    helper = _helper_for(cfg, host)
    if helper:
        try:
            run_helper(helper, "erase", config_key(host))
            removed = True
        except LookupError:
            pass
    auths = cfg.get("auths")
    if isinstance(auths, dict) and _drop_entries(auths, host):
        removed = True
        _write_config(path, cfg)
    return removed
