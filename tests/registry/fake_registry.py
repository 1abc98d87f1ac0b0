"""An in-memory OCI registry on 127.0.0.1 with switches for the faults real registries show:
scripted error answers (503 bursts, 429 + Retry-After), a connection cut mid-blob, the 416
Content-Length bug, blobs whose bytes don't match their digest, truncated manifests, and the native
referrers API (which distribution 2.8.2 lacks). Every request is recorded."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>blobs/uploads|blobs|manifests|referrers)/?(?P<ref>[^/]*)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Scripted:
    """Answer `count` requests matching `method` and `path_re` with `status` (and headers/body)."""
    method: str
    path_re: str
    status: int
    count: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FakeRegistry:
    def __init__(self, *, referrers_api: bool = False) -> None:
        self.referrers_api = referrers_api
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}   # (repo, ref) -> (data, type)
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[Seen] = []
        self.scripted: list[Scripted] = []
        self.cut_blob: dict[str, int] = {}       # digest -> send only this many bytes, then drop (once)
        self.range_416: set[str] = set()         # digests whose Range requests get the 416 bug (once)
        self.corrupt_blob: set[str] = set()      # digests served with one byte flipped
        self.truncate_manifest: set[str] = set()  # refs whose manifest is cut in half (Content-Length too)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeRegistry":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, method: str, path_re: str, status: int, count: int = 1, **kw) -> None:
        self.scripted.append(Scripted(method, path_re, status, count, **kw))

    def seen(self, method: str, path_re: str = "") -> list[Seen]:
        return [r for r in self.requests if r.method == method and re.search(path_re, r.path)]

    def put_blob(self, data: bytes) -> str:
        d = digest_of(data)
        self.blobs[d] = data
        return d

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        d = digest_of(data)
        self.manifests[(repo, ref)] = (data, media_type)
        self.manifests[(repo, d)] = (data, media_type)
        return d

    # -- HTTP -------------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
                self._send(status, body, {"Content-Type": "application/json"})

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(Seen(self.command, parts.path, dict(self.headers)))
                body = self._body() if self.command in ("PUT", "POST", "PATCH") else b""
                with fake.lock:
                    for s in fake.scripted:
                        if s.count > 0 and s.method == self.command and re.search(s.path_re, parts.path):
                            s.count -= 1
                            self._send(s.status, s.body, s.headers)
                            return
                if parts.path == "/v2/":
                    return self._send(200, b"{}", {"Content-Type": "application/json"})
                m = _ROUTE.match(parts.path)
                if not m:
                    return self._send(404, b"404 page not found\n", {"Content-Type": "text/plain"})
                name, kind, ref = m.group("name"), m.group("kind"), m.group("ref")
                query = parse_qs(parts.query)
                getattr(self, "_" + kind.replace("/", "_"))(name, ref, query, body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

            # -- blobs ----------------------------------------------------------------------------

            def _blobs(self, name: str, digest: str, query: dict, body: bytes) -> None:
                data = fake.blobs.get(digest)
                if data is None:
                    return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                if digest in fake.corrupt_blob:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                rng = self.headers.get("Range")
                if rng and self.command == "GET":
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if digest in fake.range_416:
                        fake.range_416.discard(digest)
                        # distribution 2.8.2: a bogus Content-Length (the blob size) on a short body
                        msg = b'{"errors":[{"code":"UNKNOWN","message":"x"}]}'
                        self.send_response(416)
                        self.send_header("Content-Length", str(len(data)))
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(msg)
                        self.close_connection = True
                        return
                    part = data[start:]
                    return self._send(206, part, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                                                  "Content-Type": "application/octet-stream"})
                cut = fake.cut_blob.pop(digest, None) if self.command == "GET" else None
                if cut is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Docker-Content-Digest", digest)
                    self.end_headers()
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(200, data, {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"})

            def _blobs_uploads(self, name: str, upload: str, query: dict, body: bytes) -> None:
                if self.command == "POST":
                    if "mount" in query and query["mount"][0] in fake.blobs:
                        return self._send(201, b"", {"Location": f"/v2/{name}/blobs/{query['mount'][0]}"})
                    uid = uuid.uuid4().hex
                    fake.uploads[uid] = bytearray(body)
                    return self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{uid}",
                                                 "Range": "0-0", "Docker-Upload-UUID": uid})
                if upload not in fake.uploads:
                    return self._error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
                fake.uploads[upload] += body
                if self.command == "PATCH":
                    n = len(fake.uploads[upload])
                    return self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{upload}",
                                                 "Range": f"0-{max(n - 1, 0)}"})
                if self.command == "PUT":
                    data = bytes(fake.uploads.pop(upload))
                    want = query.get("digest", [""])[0]
                    if digest_of(data) != want:
                        return self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
                    fake.blobs[want] = data
                    return self._send(201, b"", {"Location": f"/v2/{name}/blobs/{want}", "Docker-Content-Digest": want})
                self._send(405)

            # -- manifests ------------------------------------------------------------------------

            def _manifests(self, name: str, ref: str, query: dict, body: bytes) -> None:
                if self.command == "PUT":
                    media_type = self.headers.get("Content-Type", "")
                    obj = json.loads(body)
                    for blob in [obj.get("config")] + obj.get("layers", []) if "layers" in obj else []:
                        if blob["digest"] not in fake.blobs:
                            return self._error(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
                    d = fake.put_manifest(name, ref, body, media_type)
                    headers = {"Docker-Content-Digest": d, "Location": f"/v2/{name}/manifests/{d}"}
                    if fake.referrers_api and obj.get("subject"):
                        headers["OCI-Subject"] = obj["subject"]["digest"]
                    return self._send(201, b"", headers)
                got = fake.manifests.get((name, ref))
                if got is None:
                    return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                data, media_type = got
                if ref in fake.truncate_manifest:
                    data = data[: len(data) // 2]
                self._send(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest_of(got[0])})

            def _referrers(self, name: str, digest: str, query: dict, body: bytes) -> None:
                if not fake.referrers_api:
                    return self._send(404, b"404 page not found\n", {"Content-Type": "text/plain"})
                want = query.get("artifactType", [None])[0]
                entries = []
                for (repo, ref), (data, media_type) in list(fake.manifests.items()):
                    if repo != name or not ref.startswith("sha256:"):
                        continue
                    obj = json.loads(data)
                    if (obj.get("subject") or {}).get("digest") != digest:
                        continue
                    art = obj.get("artifactType") or obj.get("config", {}).get("mediaType")
                    if want and art != want:
                        continue
                    entries.append({"mediaType": media_type, "digest": ref, "size": len(data), "artifactType": art})
                out = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
                headers = {"Content-Type": OCI_INDEX}
                if want:
                    headers["OCI-Filters-Applied"] = "artifactType"
                self._send(200, out, headers)

        return Handler
