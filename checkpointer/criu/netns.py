"""A container's network namespace, as far as a checkpoint carries it.

runc passes CRIU `empty-ns network` on every checkpoint and restore ("runc doesn't manage network
devices"): CRIU never saves a runc container's network namespace and restores its processes into
a blank one, with loopback down and no address or route. Interfaces other than loopback come back
through the spec's prestart/createRuntime hooks, which runc runs again at CRIU's setup-namespaces
step. Loopback is ckpt's job: a save records it (`read`), and a restore replays it from a CRIU
action script at setup-namespaces, before any socket is restored (`restore_script`).
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptData, MissingDependency, RuntimeFailed

PRIVATE, JOINED, HOST = "private", "joined", "host"  # own namespace / one named by a path / the host's
NAMESPACES = (PRIVATE, JOINED, HOST)
# What the kernel gives loopback when it goes up; anything else was added by the container.
_DEFAULT_ADDRESSES = ("127.0.0.1/8", "::1/128")
# Route types that have no device ("blackhole 10.0.0.0/8"); the kernel shows some on lo.
_DEVICELESS = ("blackhole", "unreachable", "prohibit", "throw")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
TOOLS_HINT = "install iproute2 and util-linux (they provide ip and nsenter)"


@dataclass(frozen=True, slots=True)
class Address:
    cidr: str  # "10.1.2.3/32", "fd00::1/128"
    scope: str = "global"

    def command(self) -> str:
        return f"address replace {self.cidr} dev lo scope {self.scope}"


@dataclass(frozen=True, slots=True)
class Route:
    dst: str  # a prefix: "10.0.0.0/8", "0.0.0.0/0", "::/0"
    type: str = "unicast"
    table: str = "main"
    protocol: str = ""
    scope: str = ""
    src: str = ""
    metric: int | None = None

    def command(self) -> str:
        words = ["route", "replace"] + ([] if self.type == "unicast" else [self.type]) + [self.dst]
        words += [] if self.type in _DEVICELESS else ["dev", "lo"]
        words += ["table", self.table]
        words += ["proto", self.protocol] if self.protocol else []
        words += ["scope", self.scope] if self.scope else []
        words += ["src", self.src] if self.src else []
        words += ["metric", str(self.metric)] if self.metric is not None else []
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class Loopback:
    up: bool = True
    addresses: tuple[Address, ...] = ()  # beyond the kernel's own
    routes: tuple[Route, ...] = ()  # through lo (or through no device), beyond the kernel's own

    def commands(self) -> list[str]:
        """`ip -batch` lines that bring it back in a blank namespace (none to leave it down)."""
        up = ["link set lo up"] if self.up else []
        return up + [a.command() for a in self.addresses] + [r.command() for r in self.routes]


@dataclass(frozen=True, slots=True)
class NetworkState:
    namespace: str  # PRIVATE, JOINED or HOST
    loopback: Loopback | None = None  # recorded for a private namespace only
    interfaces: tuple[str, ...] = ()  # every interface at save, lo included

    @classmethod
    def assumed(cls, spec: dict[str, Any]) -> NetworkState:
        """For a checkpoint that recorded nothing: what runc gave the container when it started."""
        namespace = namespace_of(spec)
        return cls(namespace, Loopback() if namespace == PRIVATE else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": self.namespace, "interfaces": list(self.interfaces)}
        if self.loopback is not None:
            lo = self.loopback
            out["loopback"] = {
                "up": lo.up,
                "addresses": [{"address": a.cidr, "scope": a.scope} for a in lo.addresses],
                "routes": [{k: v for k, v in (("dst", r.dst), ("type", r.type), ("table", r.table),
                                               ("protocol", r.protocol), ("scope", r.scope), ("src", r.src),
                                               ("metric", r.metric)) if v not in ("", None)}
                           for r in lo.routes],
            }
        return out

    @classmethod
    def from_json(cls, obj: Any) -> NetworkState:
        """Read and check a recorded state: every value ends up in a script run as root."""
        try:
            namespace = obj["namespace"]
            if namespace not in NAMESPACES:
                raise ValueError(f"namespace {namespace!r}")
            interfaces = tuple(_name(n) for n in obj.get("interfaces", []))
            lo = obj.get("loopback")
            loopback = None if lo is None else Loopback(
                up=bool(lo.get("up", True)),
                addresses=tuple(Address(_interface(a["address"]), _name(a.get("scope", "global")))
                                for a in lo.get("addresses", [])),
                routes=tuple(_route_from_json(r) for r in lo.get("routes", [])))
            return cls(namespace, loopback, interfaces)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptData(f"the checkpoint's network record is malformed: {exc!r}") from None


def namespace_of(spec: dict[str, Any]) -> str:
    """Which network namespace a runtime spec gives its container."""
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and ns.get("type") == "network":
            return JOINED if ns.get("path") else PRIVATE
    return HOST


def tools() -> tuple[str, str]:
    """The full paths of nsenter and ip."""
    nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
    if not nsenter or not ip:
        raise MissingDependency(f"{'nsenter' if not nsenter else 'ip'} is not installed, and ckpt needs it for "
                                "the network of containers that have a network namespace", hint=TOOLS_HINT)
    return nsenter, ip


def read(pid: int, namespace: str) -> NetworkState:
    """The network state of the namespace process `pid` is in (nothing to read of the host's)."""
    if namespace == HOST:
        return NetworkState(HOST)
    nsenter, ip = tools()
    script = '"$0" -j address show && "$0" -j -4 route show table all && "$0" -j -6 route show table all'
    res = subprocess.run([nsenter, "-t", str(pid), "-n", "--", "/bin/sh", "-c", script, ip],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, timeout=30)
    if res.returncode != 0:
        raise RuntimeFailed(f"cannot read the network of process {pid}", output=res.stderr.strip())
    try:
        links, routes4, routes6 = _json_values(res.stdout)
        return parse(namespace, links, routes4, routes6)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeFailed(f"cannot make sense of `ip -j` output for process {pid}: {exc!r}") from None


def parse(namespace: str, links: list[Any], routes4: list[Any], routes6: list[Any]) -> NetworkState:
    """The state from `ip -j address show` and `ip -j -4/-6 route show table all`."""
    interfaces = tuple(str(link["ifname"]) for link in links)
    if namespace != PRIVATE:
        return NetworkState(namespace, None, interfaces)
    lo = next((link for link in links if link.get("ifname") == "lo"), None)
    if lo is None:
        return NetworkState(namespace, Loopback(up=False), interfaces)
    addresses = tuple(Address(f"{a['local']}/{a['prefixlen']}", str(a.get("scope", "global")))
                      for a in lo.get("addr_info", [])
                      if f"{a['local']}/{a['prefixlen']}" not in _DEFAULT_ADDRESSES)
    routes = tuple(_route(r, default) for rs, default in ((routes4, "0.0.0.0/0"), (routes6, "::/0")) for r in rs
                   if r.get("protocol") != "kernel" and (r.get("dev") in (None, "lo")
                                                          or r.get("type") in _DEVICELESS))
    return NetworkState(namespace, Loopback("UP" in lo.get("flags", []), addresses, routes), interfaces)


def restore_script(loopback: Loopback, nsenter: str, ip: str) -> str | None:
    """A CRIU action script that brings `loopback` back at setup-namespaces (None: nothing to do).
    CRIU calls action scripts at every step of a restore; CRTOOLS_INIT_PID is the restored init."""
    commands = loopback.commands()
    if not commands:
        return None
    return ("#!/bin/sh\n"
            "# Written by ckpt for one restore: the container's loopback, before CRIU restores its sockets.\n"
            '[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] || exit 0\n'
            f'exec {shlex.quote(nsenter)} -t "$CRTOOLS_INIT_PID" -n -- {shlex.quote(ip)} -batch - <<\'CKPT_END\'\n'
            + "".join(f"{c}\n" for c in commands) + "CKPT_END\n")


def interfaces_now(pid: int) -> tuple[str, ...]:
    """The interfaces of the network namespace process `pid` is in (from /proc: no process to run)."""
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return ()
    return tuple(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def missing_after_restore(state: NetworkState, pid: int) -> tuple[str, ...]:
    """Interfaces the container had at save that its restored namespace lacks."""
    if state.namespace == HOST or not state.interfaces:
        return ()
    now = set(interfaces_now(pid))
    return tuple(name for name in state.interfaces if name not in now) if now else ()


def warnings_after_restore(state: NetworkState, pid: int) -> tuple[str, ...]:
    """What a restore tells about the network that did not come back."""
    return tuple(f"interface {name} of the checkpoint is missing in the restored container's network namespace "
                 "(interfaces other than lo come back only through the runtime's hooks or the engine's network; "
                 "see docs/network.md)" for name in missing_after_restore(state, pid))


def _route(obj: dict[str, Any], default: str) -> Route:
    dst = obj["dst"]
    if dst == "default":
        dst = default
    elif "/" not in dst:
        dst += "/128" if ":" in dst else "/32"
    metric = obj.get("metric")
    return Route(dst=dst, type=str(obj.get("type", "unicast")), table=str(obj.get("table", "main")),
                 protocol=str(obj.get("protocol", "")), scope=str(obj.get("scope", "")),
                 src=str(obj.get("prefsrc", "")), metric=int(metric) if metric is not None else None)


def _route_from_json(obj: dict[str, Any]) -> Route:
    metric = obj.get("metric")
    if metric is not None and (not isinstance(metric, int) or isinstance(metric, bool) or metric < 0):
        raise ValueError(f"metric {metric!r}")
    return Route(dst=str(ipaddress.ip_network(obj["dst"], strict=False)), type=_name(obj.get("type", "unicast")),
                 table=_name(obj.get("table", "main")), protocol=_name(obj.get("protocol", ""), empty=True),
                 scope=_name(obj.get("scope", ""), empty=True),
                 src=str(ipaddress.ip_address(obj["src"])) if obj.get("src") else "", metric=metric)


def _interface(text: str) -> str:
    return str(ipaddress.ip_interface(text))


def _name(value: Any, empty: bool = False) -> str:
    text = str(value)
    if (empty and text == "") or _NAME.fullmatch(text):
        return text
    raise ValueError(f"{text!r} is not a name")


def _json_values(text: str) -> list[Any]:
    decoder, values, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    return values
