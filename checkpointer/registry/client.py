"""`Registry`: one pooled, authenticated, retrying HTTP client for one registry host."""
from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from ..errors import AuthError, Unreachable
from ..retry import RetryPolicy
from . import credentials as creds_mod
from .auth import Auth
from .credentials import Credentials
from .transport import Body, Transport, error_from_response, is_loopback, make_session

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0


class Registry:
    """A client for `host` ("name[:port]"). TLS is verified by default; plain http is tried only for
    loopback hosts or with `insecure=True` (which also skips certificate checks). `ca_dir` is a
    directory of *.crt files to trust (docker's certs.d layout). `credentials=None` looks them up
    (see credentials.py) the first time the registry asks; pass `Credentials()` for anonymous."""

    def __init__(self, host: str, *, insecure: bool = False, ca_dir: Path | str | None = None,
                 credentials: Credentials | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, pool: int = 16, plain_http: bool | None = None,
                 config_path: Path | None = None) -> None:
        self.host = host
        self.insecure = insecure
        self._plain_http = plain_http
        if insecure:
            from urllib3.exceptions import InsecureRequestWarning
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        self.session = make_session(ca_dir=Path(ca_dir) if ca_dir else None, verify=not insecure, pool=pool,
                                    env_proxies=not is_loopback(host))
        self.transport = Transport(self.session, host, timeout=timeout, policy=retry or RetryPolicy())
        given = credentials

        def get_credentials() -> Credentials | None:
            return given if given is not None else creds_mod.lookup(host, config_path=config_path)

        self.auth = Auth(host, self.transport, get_credentials, insecure=insecure)
        self._base: str | None = None
        self._base_lock = threading.Lock()
        self.requests_sent: list[tuple[str, str]] = []  # (method, path): for tests and diagnostics
        # (repository, digest) of blobs this client uploaded: a manifest push after an early
        # upload (BlobUploader) need not ask about each of them again.
        self.uploaded: set[tuple[str, str]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- base URL and ping ----------------------------------------------------------------------

    def _schemes(self) -> list[str]:
        if self._plain_http is not None:
            return ["http"] if self._plain_http else ["https"]
        return ["https", "http"] if self.insecure or is_loopback(self.host) else ["https"]

    @property
    def base_url(self) -> str:
        """`scheme://host`, found by pinging /v2/ (https first; http only where allowed)."""
        with self._base_lock:
            if self._base is None:
                self._base = self._probe()
            return self._base

    def _probe(self) -> str:
        first_error: Unreachable | None = None
        for scheme in self._schemes():
            base = f"{scheme}://{self.host}"
            try:
                resp = self.transport.send("GET", base + "/v2/")
            except Unreachable as exc:
                first_error = first_error or exc
                continue
            if scheme == "http" and resp.status_code == 400 and first_error:
                resp.close()  # an https-only server answering our plain request
                continue
            if resp.status_code == 401:
                self.auth.challenge(resp, ())
            elif resp.status_code not in (200,) and resp.status_code != 404:
                log.info("registry %s: /v2/ answered HTTP %d", self.host, resp.status_code)
            resp.close()
            if scheme == "http":
                log.info("registry %s speaks plain http", self.host)
            return base
        assert first_error is not None
        raise first_error

    def ping(self) -> None:
        """Check that the registry answers and that our credentials are accepted."""
        base = self.base_url
        if self.auth.scheme == "bearer":
            self.auth.fetch_token(())
            return
        self.request("GET", "/v2/", scopes=(), what="checking the registry")
        assert base

    # -- requests -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def request(self, method: str, path: str, *, scopes: Iterable[str], what: str,
                headers: dict[str, str] | None = None, body: Body = None, stream: bool = False,
                ok: Iterable[int] = (200,), retry: bool = True) -> requests.Response:
        """Send with auth (retrying once after a 401 challenge) and retries; raise the registry's
        error unless the status is in `ok`."""
        url = self.url(path)
        scopes = tuple(scopes)
        ok = tuple(ok)
        for attempt in (1, 2):
            sent = dict(headers or {})
            sent.update(self.auth.headers(scopes))
            self.requests_sent.append((method, urlsplit(url).path))
            resp = self.transport.send(method, url, headers=sent, body=body, stream=stream, retry=retry)
            if resp.status_code == 401 and attempt == 1 and resp.status_code not in ok:
                if self.auth.challenge(resp, scopes, sent.get("Authorization", "")):
                    resp.close()
                    continue
            break
        if resp.status_code == 401 and 401 not in ok:
            raise self._unauthorized(resp, what)
        if resp.status_code not in ok:
            raise error_from_response(resp, self.host, what)
        return resp

    def _unauthorized(self, resp: requests.Response, what: str) -> AuthError:
        err = error_from_response(resp, self.host, what)
        creds = self.auth.credentials
        if creds.anonymous:
            message = f"{what}: registry {self.host} requires credentials"
        elif self.auth.scheme == "bearer":
            message = f"{what}: registry {self.host} refused access for {creds.username or 'the stored token'!r}"
        else:
            message = f"{what}: registry {self.host} refused the user name or password of {creds.username!r}"
        said = err.message.split("HTTP 401", 1)[1].strip() if "HTTP 401" in err.message else ""
        return AuthError(f"{message} (HTTP 401{' ' + said if said else ''})", hint=f"run `ckpt login {self.host}`",
                         status=401, codes=err.codes or ("UNAUTHORIZED",))
