"""web: Python's http.server (the Debian python3 package's), serving files and a request counter.

    python3 web.py [--port N] [--root DIR]

GET /count answers "nonce=<hex> served=<n>\n": the nonce is drawn at start (the same one after a
restore means the same process) and n counts every request answered. Other paths are files
under DIR (default /srv/www), served by http.server's own SimpleHTTPRequestHandler.
"""
import argparse
import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

NONCE = os.urandom(8).hex()
lock = threading.Lock()
served = 0


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # nothing on stdio, which may be gone
        pass

    def do_GET(self):
        global served
        with lock:
            served += 1
            count = served
        if self.path != "/count":
            return super().do_GET()
        body = f"nonce={NONCE} served={count}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--root", default="/srv/www")
    opts = parser.parse_args()
    handler = functools.partial(Handler, directory=opts.root)
    ThreadingHTTPServer(("127.0.0.1", opts.port), handler).serve_forever()


if __name__ == "__main__":
    main()
