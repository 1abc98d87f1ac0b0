"""HTTP plumbing for one registry host: a pooled requests Session with TLS set up, retries on
408/429/5xx and dropped connections (by the one policy of checkpointer/retry.py: backoff with full
jitter, Retry-After honoured), capped body reads, and translation of registry error bodies into
ckpt's exceptions."""
from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..errors import AuthError, CorruptData, NotFound, RegistryError, Unreachable
from ..retry import RetryPolicy
from ..retry import parse_retry_after as parse_retry_after  # its old home: callers still import it here

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ERROR_BODY_LIMIT = 64 << 10
USER_AGENT = "ckpt/0.1 (+python-requests)"

Body = bytes | Mapping[str, str] | None | Callable[[], Any]  # a Mapping is sent as a form


class RegistryNotFound(NotFound, RegistryError):
    """The registry said 404 for a repository, tag, manifest or blob (exit code of NotFound)."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and [::1], with or without a port."""
    name = host.lower()
    if name.startswith("["):
        name = name[1:name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _TLSAdapter(HTTPAdapter):
    def __init__(self, context: ssl.SSLContext | None, **kw: Any) -> None:
        self._context = context
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        if self._context is not None:
            kw["ssl_context"] = self._context
        super().init_poolmanager(*args, **kw)


def tls_context(ca_dir: Path | None) -> ssl.SSLContext | None:
    """Trust the system roots plus every *.crt in `ca_dir`; use client.cert/.key found there
    (the /etc/docker/certs.d/HOST layout)."""
    if ca_dir is None:
        return None
    ca_dir = Path(ca_dir)
    ctx = ssl.create_default_context()
    crts = sorted(ca_dir.glob("*.crt"))
    if not crts:
        raise Unreachable(f"no *.crt file in {ca_dir}", hint="put the registry's CA certificate there as ca.crt")
    for crt in crts:
        ctx.load_verify_locations(cafile=str(crt))
    for cert in sorted(ca_dir.glob("*.cert")):
        key = cert.with_suffix(".key")
        if key.exists():
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def make_session(*, ca_dir: Path | None, verify: bool, pool: int, env_proxies: bool = True) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.verify = verify
    # HTTP(S)_PROXY/NO_PROXY are honoured (not for loopback registries), ~/.netrc never is: a
    # session-level auth hook that adds nothing stops requests from sending netrc passwords.
    session.trust_env = env_proxies
    session.auth = _no_netrc
    adapter = _TLSAdapter(tls_context(ca_dir) if verify else None, pool_connections=4, pool_maxsize=pool,
                          max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0))
    return session


def read_capped(resp: requests.Response, limit: int, what: str) -> bytes:
    """The body of `resp`, refusing more than `limit` bytes (whatever Content-Length says)."""
    chunks, total = [], 0
    try:
        for chunk in resp.iter_content(64 << 10):
            total += len(chunk)
            if total > limit:
                resp.close()
                raise CorruptData(f"{what} is larger than the {limit} bytes allowed")
            chunks.append(chunk)
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as exc:
        raise CorruptData(f"{what} was cut short after {total} bytes ({type(exc).__name__})") from None
    return b"".join(chunks)


def error_codes(resp: requests.Response) -> tuple[tuple[str, ...], str]:
    """(codes, 'CODE: message; ...') parsed from a distribution-spec error body."""
    try:
        body = read_capped(resp, ERROR_BODY_LIMIT, "error body")
    except (CorruptData, requests.RequestException):
        body = b""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    codes, parts = [], []
    for err in errors if isinstance(errors, list) else []:
        if isinstance(err, dict):
            code = str(err.get("code") or "UNKNOWN")
            codes.append(code)
            parts.append(f"{code}: {err.get('message') or ''}".rstrip(": "))
    if not parts:
        text = body.decode(errors="replace").strip().splitlines()
        if text:
            parts.append(text[0][:200])
    return tuple(codes), "; ".join(parts)


_HINTS = {
    "UNAUTHORIZED": "run `ckpt login {host}`",
    "DENIED": "the account you are logged in with may not access this repository; check the name or run "
              "`ckpt login {host}`",
    "MANIFEST_INVALID": "the registry refused the manifest; it may not support OCI artifacts",
    "MANIFEST_BLOB_UNKNOWN": "a blob the manifest names is missing; push again",
    "NAME_UNKNOWN": "check the repository name",
    "NAME_INVALID": "check the repository name",
    "MANIFEST_UNKNOWN": "check the tag or digest",
    "TOOMANYREQUESTS": "the registry is rate-limiting; wait a while and retry, or log in for a higher limit",
    "SIZE_INVALID": "the registry refused the size of a blob or manifest",
    "UNSUPPORTED": "the registry does not support this operation",
}


def error_from_response(resp: requests.Response, host: str, what: str) -> RegistryError:
    codes, said = error_codes(resp)
    status = resp.status_code
    message = f"{what}: registry {host} answered HTTP {status}" + (f" ({said})" if said else "")
    hint = next((_HINTS[c] for c in codes if c in _HINTS), None)
    if hint is None and status == 401:
        hint = _HINTS["UNAUTHORIZED"]
    if hint is None and status == 429:
        hint = _HINTS["TOOMANYREQUESTS"]
    hint = hint.format(host=host) if hint else None
    if status in (401, 403) or {"UNAUTHORIZED", "DENIED"} & set(codes):
        return AuthError(message, hint=hint or _HINTS["DENIED"].format(host=host), status=status, codes=codes)
    if status == 404:
        return RegistryNotFound(message, hint=hint, status=status, codes=codes)
    return RegistryError(message, hint=hint, status=status, codes=codes)


def unreachable(exc: Exception, host: str) -> Unreachable:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        hint = ("the registry's TLS certificate is not trusted or does not match the host: give its CA "
                "with --ca-dir (a directory of *.crt), or use --insecure for a test registry")
    elif isinstance(exc, requests.Timeout):
        hint = "the registry did not answer in time; check the network or raise --timeout"
    elif "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
        hint = f"the host name {host} does not resolve; check it"
    elif "refused" in text.lower():
        hint = f"nothing listens at {host}; is the registry running and the port right?"
    else:
        hint = "check the host name, the port and the network"
    return Unreachable(f"cannot reach registry {host}: {type(exc).__name__}: {text[:300]}", hint=hint)


class Transport:
    """Sends requests with retries; knows nothing about auth (see auth.py)."""

    def __init__(self, session: requests.Session, host: str, *, timeout: float, policy: RetryPolicy) -> None:
        self.session = session
        self.host = host
        self.timeout = (min(timeout, 30.0), timeout)
        self.policy = policy
        self.sleep: Callable[[float], None] = time.sleep  # tests may replace it (pull's resumes use it too)
        self.clock: Callable[[], float] = time.monotonic

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None, body: Body = None,
             stream: bool = False, retry: bool = True, allow_redirects: bool | None = None) -> requests.Response:
        """One request, retried while the answer is 408/429/5xx or the connection dropped.
        The last retryable answer is returned as is (the caller turns it into an error)."""
        policy = self.policy if retry else RetryPolicy(tries=1)
        attempts = policy.start(sleep=self.sleep, clock=self.clock)
        if allow_redirects is None:
            allow_redirects = method in ("GET", "HEAD")
        while True:
            data = body() if callable(body) else body
            try:
                resp = self.session.request(method, url, headers=headers, data=data, stream=stream,
                                            timeout=self.timeout, allow_redirects=allow_redirects)
            except requests.exceptions.SSLError as exc:
                raise unreachable(exc, self.host) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = attempts.failed()
                if delay is None:
                    raise unreachable(exc, self.host) from None
                log.info("%s %s: %s; retry %d in %.2f s", method, _short(url), type(exc).__name__,
                         attempts.failures, delay)
                attempts.pause(delay)
                continue
            if resp.status_code not in RETRY_STATUS:
                return resp
            delay = attempts.failed(resp.headers.get("Retry-After"))
            if delay is None:
                return resp
            log.info("%s %s: HTTP %d; retry %d in %.2f s", method, _short(url), resp.status_code,
                     attempts.failures, delay)
            resp.close()
            attempts.pause(delay)


def _short(url: str) -> str:
    """A URL without its query (upload `_state` tokens are long and not for logs)."""
    return url.split("?", 1)[0]
