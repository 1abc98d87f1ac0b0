"""A real registry for tests: Debian's `docker-registry` (distribution 2.8.2) on 127.0.0.1.

    with RegistryServer(tmp_path, auth="none" | "htpasswd" | "token") as reg:
        reg.host        # "127.0.0.1:PORT"
        reg.url         # "http://127.0.0.1:PORT" or "https://..." (token auth always uses TLS)
        reg.username, reg.password      # accepted credentials (htpasswd and token set-ups)
        reg.ca_cert     # the test CA (TLS set-ups); reg.cert_dir holds it as ca.crt (skopeo --cert-dir)
        reg.token_server.requests        # what the token server was asked (token set-up)

`tls=True` also works with "none" and "htpasswd". A missing `docker-registry` raises (tests FAIL,
never skip). Keys and certificates are made with the openssl CLI; tokens are RS256 JWTs with the
signing certificate in `x5c`, issued by a small HTTPS token server on another free port.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SERVICE = "ckpt-test-registry"
ISSUER = "ckpt-test-issuer"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    done = subprocess.run(args, cwd=cwd, input=input, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout


# -- a test PKI (made once per process) -----------------------------------------------------------

class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, and a token-signing certificate."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3", "-subj", "/CN=ckpt test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                          ("token", "keyUsage=critical,digitalSignature\n")):
            (directory / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
            _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=ckpt test {name}", cwd=directory)
            _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "3", "-extfile", f"{name}.ext", cwd=directory)
        self.ca_cert = directory / "ca.crt"
        self.server_cert, self.server_key = directory / "server.crt", directory / "server.key"
        self.token_cert, self.token_key = directory / "token.crt", directory / "token.key"
        der = _run("openssl", "x509", "-in", "token.crt", "-outform", "DER", cwd=directory)
        self.token_cert_der_b64 = base64.b64encode(der).decode()

    def sign_rs256(self, data: bytes) -> bytes:
        return _run("openssl", "dgst", "-sha256", "-sign", str(self.token_key), input=data)


_pki: Pki | None = None
_pki_lock = threading.Lock()


def shared_pki() -> Pki:
    global _pki
    with _pki_lock:
        if _pki is None:
            directory = Path(tempfile.mkdtemp(prefix="ckpt-test-pki-"))
            import atexit
            atexit.register(shutil.rmtree, directory, True)
            _pki = Pki(directory)
        return _pki


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the token server -----------------------------------------------------------------------------

class TokenServer:
    """Issues registry JWTs: full requested access for the right user (Basic auth or the identity
    token via OAuth2 POST), nothing for anonymous callers (or pull, with `anonymous_pull`)."""

    def __init__(self, pki: Pki, username: str, password: str, *, identity_token: str = "",
                 expires_in: int = 300, anonymous_pull: bool = False) -> None:
        self.pki = pki
        self.username, self.password, self.identity_token = username, password, identity_token
        self.expires_in = expires_in
        self.anonymous_pull = anonymous_pull
        self.requests: list[dict] = []   # {"method", "user", "scopes", "granted"}
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                user = server._basic_user(self.headers.get("Authorization", ""))
                self._answer(user, query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                user: str | None | bool = False
                if form.get("grant_type") == ["refresh_token"]:
                    ok = bool(server.identity_token) and form.get("refresh_token") == [server.identity_token]
                    user = server.username if ok else False
                elif form.get("grant_type") == ["password"]:
                    ok = form.get("username") == [server.username] and form.get("password") == [server.password]
                    user = server.username if ok else False
                if form.get("scope"):
                    form["scope"] = form["scope"][0].split(" ")
                self._answer(user, form)

            def _answer(self, user: str | None | bool, query: dict) -> None:
                scopes = query.get("scope", [])
                if user is False:
                    server.requests.append({"method": self.command, "user": None, "scopes": scopes, "granted": None})
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    body = b'{"details":"incorrect username or password"}'
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                access = server._grant(user, scopes)
                server.requests.append({"method": self.command, "user": user, "scopes": scopes, "granted": access})
                token = server.make_token(user or "", access)
                body = json.dumps({"token": token, "access_token": token, "expires_in": server.expires_in,
                                   "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _basic_user(self, header: str) -> str | None | bool:
        """The user name if the credentials are right, None if there are none, False if wrong."""
        if not header:
            return None
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user if (user, password) == (self.username, self.password) else False

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) != 3:
                continue
            kind, name, actions = parts
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if user else [a for a in wanted if a == "pull" and self.anonymous_pull]
            if allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def make_token(self, subject: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.pki.token_cert_der_b64]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + self.expires_in, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64url(self.pki.sign_rs256(signing_input.encode()))}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the registry ---------------------------------------------------------------------------------

class RegistryServer:
    def __init__(self, workdir: Path | str, *, auth: str = "none", tls: bool | None = None,
                 username: str = "ckpt-user", password: str = "s3cret-pass", identity_token: str = "",
                 token_expires_in: int = 300, anonymous_pull: bool = False) -> None:
        if auth not in ("none", "htpasswd", "token"):
            raise ValueError(f"auth must be none, htpasswd or token, not {auth!r}")
        self.binary = shutil.which("docker-registry")
        if self.binary is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry); "
                               "registry tests need it and must not be skipped")
        self.auth = auth
        self.tls = (auth == "token") if tls is None else tls
        self.workdir = Path(workdir) / f"registry-{secrets.token_hex(3)}"
        self.username = username if auth != "none" else ""
        self.password = password if auth != "none" else ""
        self._identity_token = identity_token
        self._token_expires_in = token_expires_in
        self._anonymous_pull = anonymous_pull
        self.port = 0
        self.host = ""
        self.url = ""
        self.pki: Pki | None = None
        self.ca_cert: Path | None = None
        self.cert_dir: Path | None = None
        self.token_server: TokenServer | None = None
        self.log_path = self.workdir / "registry.log"
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- set-up -----------------------------------------------------------------------------------

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            assert self.pki
            lines += ["  tls:", f"    certificate: {self.pki.server_cert}", f"    key: {self.pki.server_key}"]
        if self.auth == "htpasswd":
            line = _run("htpasswd", "-Bbn", self.username, self.password).decode().strip()
            (self.workdir / "htpasswd").write_text(line + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: ckpt-test", f"    path: {self.workdir / 'htpasswd'}"]
        elif self.auth == "token":
            assert self.pki and self.token_server
            lines += ["auth:", "  token:", f"    realm: {self.token_server.url}", f"    service: {SERVICE}",
                      f"    issuer: {ISSUER}", f"    rootcertbundle: {self.pki.ca_cert}"]
        return "\n".join(lines) + "\n"

    def start(self) -> "RegistryServer":
        self.workdir.mkdir(parents=True)
        if self.tls:
            self.pki = shared_pki()
            self.ca_cert = self.pki.ca_cert
            self.cert_dir = self.workdir / "certs"
            self.cert_dir.mkdir()
            shutil.copy(self.pki.ca_cert, self.cert_dir / "ca.crt")
        if self.auth == "token":
            assert self.pki
            self.token_server = TokenServer(self.pki, self.username, self.password,
                                            identity_token=self._identity_token,
                                            expires_in=self._token_expires_in, anonymous_pull=self._anonymous_pull)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if self.tls else 'http'}://{self.host}"
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        self._log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert)) if self.tls else None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self._proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on {self.url} within {START_TIMEOUT} s:\n"
                                   f"{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        if self._log:
            self._log.close()
            self._log = None
        if self.token_server:
            self.token_server.stop()
            self.token_server = None

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- conveniences for tests ------------------------------------------------------------------

    def skopeo_args(self) -> list[str]:
        """Options that let skopeo reach this registry (TLS trust and credentials)."""
        args = [f"--cert-dir={self.cert_dir}"] if self.tls else ["--tls-verify=false"]
        if self.username:
            args.append(f"--creds={self.username}:{self.password}")
        return args
