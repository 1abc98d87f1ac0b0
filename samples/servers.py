#!/usr/bin/env python3
"""OCI runtime bundles that run real servers from Debian's packages, on the cached Debian rootfs
(samples/debian_rootfs.py): Redis and Python's http.server (samples/workloads/web.py).

    servers.py BUNDLE redis|web [--port N]

Both listen on 127.0.0.1 inside the container's own network namespace; a client reaches them
from there (nsenter --net). Their stdio goes to a file inside the container: CRIU cannot dump a
descriptor of a host file, which the runtime's stdio would be.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import debian_rootfs  # noqa: E402
from make_bundle import write_spec  # noqa: E402

REDIS_PORT = 6379
WEB_PORT = 8080


def redis_bundle(rootfs: Path, dest: Path, port: int = REDIS_PORT) -> Path:
    """Redis with no persistence (no fork for snapshots while it is checkpointed) and DEBUG
    allowed from loopback (DEBUG POPULATE fills it fast for benchmarks)."""
    _copy_rootfs(rootfs, dest)
    conf = dest / "rootfs" / "etc" / "redis" / "zoo.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f'bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\nsave ""\nappendonly no\n'
                    f'dir /tmp\nenable-debug-command local\n')
    write_spec(dest, _detached("/usr/bin/redis-server /etc/redis/zoo.conf", "/tmp/redis.out"))
    return dest


def web_bundle(rootfs: Path, dest: Path, port: int = WEB_PORT) -> Path:
    """Python's http.server with a request counter; /srv/www/index.html holds random text."""
    _copy_rootfs(rootfs, dest)
    srv = dest / "rootfs" / "srv"
    shutil.copy2(HERE / "workloads" / "web.py", srv / "web.py")
    (srv / "www").mkdir()
    (srv / "www" / "index.html").write_text(f"<p>{secrets.token_hex(32)}</p>\n")
    write_spec(dest, _detached(f"/usr/bin/python3 /srv/web.py --port {port} --root /srv/www", "/tmp/web.out"))
    return dest


def _copy_rootfs(rootfs: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    shutil.copytree(rootfs, dest / "rootfs", symlinks=True)


def _detached(command: str, output: str) -> list[str]:
    return ["/bin/sh", "-c", f"exec {command} </dev/null >{output} 2>&1"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("server", choices=("redis", "web"))
    parser.add_argument("--port", type=int)
    opts = parser.parse_args()
    rootfs = debian_rootfs.ensure()
    make = redis_bundle if opts.server == "redis" else web_bundle
    make(rootfs, opts.bundle, **({"port": opts.port} if opts.port else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
