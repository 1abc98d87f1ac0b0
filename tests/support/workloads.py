"""The workload zoo in tests: its bundles (samples/zoo_bundle.py, samples/servers.py), its state
files, a migration through a registry, and clients that talk to a container from outside it."""
from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from support.registry_server import RegistryServer
from support.sample import ckpt, runc_status

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "samples"))

import debian_rootfs  # noqa: E402,F401  (re-exported for the tests)
import servers  # noqa: E402,F401
import zoo_bundle  # noqa: E402,F401


@dataclass(frozen=True)
class ZooState:
    """A zoo workload's state file: nonce, ok, error and the workload's own words."""
    nonce: str
    ok: bool
    error: str | None
    fields: dict[str, str]

    def int(self, key: str) -> int:
        return int(self.fields[key])

    def list(self, key: str) -> list[str]:
        return self.fields[key].split(",")


def parse_zoo_state(text: str) -> ZooState:
    fields = dict(word.split("=", 1) for word in text.split())
    return ZooState(fields.pop("nonce"), fields.pop("ok") == "1", fields.pop("error", None), fields)


def read_zoo_state(rootfs: Path) -> ZooState:
    return parse_zoo_state((rootfs / "state").read_text())


def wait_zoo(rootfs: Path, predicate, timeout: float = 20.0) -> ZooState:  # noqa: ANN001
    """The first state that matches; a workload that reports a broken invariant fails at once."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = read_zoo_state(rootfs)
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
            continue
        if not last.ok:
            raise AssertionError(f"the workload found its own invariant broken: {last}")
        if predicate(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"workload state never matched within {timeout}s; last seen: {last}")


def container_pid(runc_root: Path, name: str) -> int:
    res = subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True, text=True,
                         check=True)
    return int(json.loads(res.stdout)["pid"])


# -- a migration through a registry -----------------------------------------------------------

@dataclass(frozen=True)
class Restored:
    ref: str
    digest: str
    bundle: Path
    pid: int

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"


def save_to(registry: RegistryServer, runc_root: Path, name: str, home: Path,
            *flags: str) -> subprocess.CompletedProcess:
    ref = f"{registry.host}/zoo/{name}:v1"
    return ckpt("save", "--runc-root", str(runc_root), *flags, name, ref, "--insecure", "--json", home=home)


def migrate(registry: RegistryServer, runc_root: Path, name: str, bundle: Path, home: Path,
            flags: tuple[str, ...] = (), before_wipe: Callable[[Path], None] | None = None) -> Restored:
    """Save to the registry, wipe every trace here (container, bundle, ckpt's store), restore from
    the reference alone. `before_wipe` sees the bundle as the save left it."""
    ref = save_and_wipe(registry, runc_root, name, bundle, home, flags, before_wipe)
    out = restore(runc_root, ref, home)
    assert out.returncode == 0, f"restore failed ({out.returncode}):\n{out.stderr}"
    info = json.loads(out.stdout)
    return Restored(ref, info["digest"], Path(info["bundle"]), container_pid(runc_root, name))


def save_and_wipe(registry: RegistryServer, runc_root: Path, name: str, bundle: Path, home: Path,
                  flags: tuple[str, ...] = (), before_wipe: Callable[[Path], None] | None = None) -> str:
    """The first half of a migration: the reference the checkpoint went to."""
    ref = f"{registry.host}/zoo/{name}:v1"
    saved = save_to(registry, runc_root, name, home, *flags)
    assert saved.returncode == 0, f"save failed ({saved.returncode}):\n{saved.stderr}"
    assert json.loads(saved.stdout)["references"] == [ref]
    assert runc_status(runc_root, name) is None, "the saved container should be gone"
    if before_wipe:
        before_wipe(bundle)
    shutil.rmtree(bundle)
    shutil.rmtree(home)
    home.mkdir()
    return ref


def restore(runc_root: Path, ref: str, home: Path) -> subprocess.CompletedProcess:
    return ckpt("restore", "--runc-root", str(runc_root), ref, "--insecure", "--json", home=home)


def registry_has(registry: RegistryServer, name: str) -> bool:
    request = urllib.request.Request(f"{registry.url}/v2/zoo/{name}/manifests/v1", method="HEAD",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


# -- clients from outside the container --------------------------------------------------------

def in_netns(pid: int, argv: list[str], timeout: float = 20) -> str:
    """Run a host program in the container's network namespace only (its files stay the host's)."""
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:3])} in the container's network failed ({res.returncode}): "
                             f"{res.stdout}{res.stderr}")
    return res.stdout


def python_in_netns(pid: int, code: str, *args: str) -> str:
    return in_netns(pid, [sys.executable, "-c", code, *args])


def redis_cli(pid: int, rootfs: Path, *args: str, port: int = servers.REDIS_PORT) -> str:
    """Debian's redis-cli (from the container's rootfs) as a new client, from the host, in the
    container's network namespace."""
    return in_netns(pid, ["chroot", str(rootfs), "/usr/bin/redis-cli", "-p", str(port), *args]).strip()


def http_get(pid: int, path: str, port: int = servers.WEB_PORT) -> str:
    return python_in_netns(pid, "import sys, urllib.request as u; "
                                "sys.stdout.write(u.urlopen(sys.argv[1], timeout=10).read().decode())",
                           f"http://127.0.0.1:{port}{path}")


def udp_ask(pid: int, port: int) -> str:
    return python_in_netns(pid, "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                "s.settimeout(5); s.sendto(b'ask', ('127.0.0.1', int(sys.argv[1]))); "
                                "sys.stdout.write(s.recv(256).decode())", str(port))


def unix_ask(path: Path) -> str:
    """One question to the zoo's unix listener, through its socket file in the container's rootfs."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"ask\n")
        return s.recv(256).decode()


def fnv64(data: bytes) -> int:
    """The zoo's checksum (samples/workloads/zoo.h zoo_fnv): FNV-1a over little-endian 64-bit words."""
    h = 1469598103934665603
    for (word,) in struct.iter_unpack("<Q", data):
        h = ((h ^ word) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h
