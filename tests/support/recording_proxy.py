"""An HTTP proxy on 127.0.0.1 in front of a real registry (registry_server.py) that records every
request with the bytes of its answer, and can slow the answers down.

    with RecordingProxy(registry.url, rate=20 << 20) as proxy:
        ref = f"{proxy.host}/repo:tag"          # clients talk to the proxy; it forwards to the registry
        ...
        proxy.blob_bytes()                       # body bytes of every blob GET answered
        proxy.blobs_fetched()                    # {digest: bytes} of those
        proxy.rate = None                        # full speed from now on

The bytes are counted as they leave the proxy: what a client was sent, independent of what the
client counts itself. `rate` (bytes per second, per answer) makes a transfer last long enough to
stop the registry in its middle.
"""
from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer"}


@dataclass
class Answered:
    method: str
    path: str
    status: int
    bytes: int  # body bytes sent to the client (so far, for an answer still being sent)


class RecordingProxy:
    def __init__(self, upstream: str, *, rate: float | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.rate = rate
        self.answered: list[Answered] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what was sent -----------------------------------------------------------------------------

    def clear(self) -> None:
        with self.lock:
            self.answered.clear()

    def blobs_fetched(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.lock:
            for a in self.answered:
                m = _BLOB.match(a.path)
                if m and a.method == "GET" and a.status in (200, 206):
                    out[m["digest"]] = out.get(m["digest"], 0) + a.bytes
        return out

    def blob_bytes(self) -> int:
        return sum(self.blobs_fetched().values())

    def total_bytes(self) -> int:
        with self.lock:
            return sum(a.bytes for a in self.answered)

    def paths(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(a.method, a.path) for a in self.answered]

    # -- the server ----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # as the registry itself would: no answer at all
                    return
                record = Answered(self.command, urlsplit(self.path).path, resp.status, 0)
                with proxy.lock:
                    proxy.answered.append(record)
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                whole = None
                if resp.getheader("Content-Length") is None and self.command != "HEAD":
                    whole = resp.read()  # a chunked answer: sent on with its length
                    self.send_header("Content-Length", str(len(whole)))
                self.end_headers()
                if self.command == "HEAD":
                    conn.close()
                    return
                started = time.monotonic()
                try:
                    for chunk in [whole] if whole is not None else iter(lambda: resp.read1(64 << 10), b""):
                        self.wfile.write(chunk)
                        record.bytes += len(chunk)
                        if proxy.rate:  # no faster than `rate` bytes per second since the answer began
                            ahead = record.bytes / proxy.rate - (time.monotonic() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # the registry (or the client) went away mid-answer
                finally:
                    conn.close()
                expected = resp.getheader("Content-Length")
                if expected is not None and record.bytes < int(expected):
                    self.close_connection = True  # cut off, as the registry's own connection was

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        return Handler
