"""Registry authentication: anonymous, Basic, and the Bearer token flow (distribution
`spec/auth/token.md`): on a `WWW-Authenticate: Bearer realm=..,service=..,scope=..` challenge, get a
token from the realm for the scopes wanted (with Basic credentials, an OAuth2 refresh token, or
anonymously), cache it per scope set, and refresh it before it expires or after a 401."""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import requests

from ..errors import AuthError, CorruptData
from .credentials import ANONYMOUS, Credentials
from .transport import Transport, error_from_response, is_loopback, read_capped

log = logging.getLogger(__name__)

TOKEN_BODY_LIMIT = 1 << 20
DEFAULT_EXPIRES_IN = 60
CLIENT_ID = "ckpt"

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="r",service="s"` -> ("bearer", {"realm": "r", "service": "s"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


class Auth:
    """Authorization headers for one registry host; thread-safe."""

    def __init__(self, host: str, transport: Transport, get_credentials: Callable[[], Credentials | None], *,
                 insecure: bool = False) -> None:
        self.host = host
        self._transport = transport
        self._get_credentials = get_credentials
        self._insecure = insecure
        self._creds: Credentials | None = None
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self.scheme: str | None = None   # None (no challenge seen yet), "basic" or "bearer"
        self.realm = ""
        self.service = ""
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}
        self._extra_scopes: dict[frozenset[str], frozenset[str]] = {}  # asked for by the registry
        self.tokens_fetched = 0          # for tests and diagnostics

    @property
    def credentials(self) -> Credentials:
        with self._lock:
            if self._creds is None:
                self._creds = self._get_credentials() or ANONYMOUS
            return self._creds

    # -- what to send ------------------------------------------------------------------------

    def headers(self, scopes: Iterable[str]) -> dict[str, str]:
        if self.scheme == "basic":
            creds = self.credentials
            if creds.username or creds.password:
                raw = f"{creds.username}:{creds.password}".encode()
                return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
            return {}
        if self.scheme == "bearer":
            token = self.token(frozenset(scopes))
            return {"Authorization": f"Bearer {token}"} if token else {}
        return {}

    def challenge(self, resp: requests.Response, scopes: Iterable[str], sent: str = "") -> bool:
        """Learn from a 401 to a request that carried the Authorization header `sent`; True if
        sending the request again may now succeed."""
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        wanted = frozenset(scopes)
        if scheme == "basic":
            first = self.scheme != "basic"
            self.scheme = "basic"
            return first and not self.credentials.anonymous
        if scheme == "bearer" and params.get("realm"):
            with self._lock:
                self.scheme = "bearer"
                self.realm = params["realm"]
                self.service = params.get("service", "")
                cached = self._tokens.get(wanted)
                if cached and (not sent or sent == f"Bearer {cached[0]}"):
                    del self._tokens[wanted]  # refused; unless another thread has replaced it already
            if params.get("scope"):
                extra = frozenset(params["scope"].split(" "))
                if not extra <= wanted:
                    with self._lock:  # fetched together with `wanted` on the retry
                        self._extra_scopes[wanted] = extra
            return True
        log.warning("registry %s sent an unknown auth challenge %r", self.host, scheme or header[:40])
        return False

    # -- bearer tokens -----------------------------------------------------------------------

    def token(self, scopes: frozenset[str]) -> str:
        with self._fetch_lock:  # one fetch at a time, so parallel blob threads share one token
            with self._lock:
                cached = self._tokens.get(scopes)
                if cached and cached[1] > time.monotonic():
                    return cached[0]
                extra = self._extra_scopes.get(scopes, frozenset())
            token, expires_in = self.fetch_token(scopes | extra)
            refresh_at = time.monotonic() + expires_in - min(10.0, expires_in * 0.2)
            with self._lock:
                self._tokens[scopes] = (token, refresh_at)
            return token

    def fetch_token(self, scopes: Iterable[str]) -> tuple[str, float]:
        creds = self.credentials
        realm = self.realm
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https"):
            raise AuthError(f"registry {self.host} names a token realm that is not a URL: {realm[:100]!r}")
        if parts.scheme == "http" and not creds.anonymous and not (self._insecure or is_loopback(parts.netloc)):
            raise AuthError(f"refusing to send credentials to the plain-http token realm of {self.host}",
                            hint="the registry's token service must use https")
        scope_list = sorted(s for s in scopes if s)
        log.debug("fetching a token for %s, scopes %s", self.host, scope_list)
        if creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": self.service, "client_id": CLIENT_ID, "scope": " ".join(scope_list)}
            resp = self._transport.send("POST", realm, body=form, allow_redirects=False)
        else:
            params: list[tuple[str, str]] = [("service", self.service)] if self.service else []
            if creds.username:
                params.append(("account", creds.username))
            params += [("scope", s) for s in scope_list]
            headers = {}
            if creds.username or creds.password:
                raw = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            req = requests.Request("GET", realm, params=params).prepare()
            resp = self._transport.send("GET", req.url or realm, headers=headers)
        self.tokens_fetched += 1
        if resp.status_code in (401, 403):
            resp.close()
            who = ("anonymous access" if creds.anonymous else f"user {creds.username!r}" if creds.username
                   else "the stored token")
            raise AuthError(f"registry {self.host} refused {who} (token service answered HTTP {resp.status_code})",
                            hint=f"run `ckpt login {self.host}`", status=resp.status_code, codes=("UNAUTHORIZED",))
        if resp.status_code != 200:
            raise error_from_response(resp, self.host, "token request")
        try:
            obj = json.loads(read_capped(resp, TOKEN_BODY_LIMIT, "token response"))
            token = obj.get("token") or obj.get("access_token")
            expires_in = float(obj.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, AttributeError, TypeError):
            raise CorruptData(f"the token service of {self.host} sent something that is not a token") from None
        if not isinstance(token, str) or not token:
            raise CorruptData(f"the token service of {self.host} sent no token")
        return token, max(expires_in, 1.0)
