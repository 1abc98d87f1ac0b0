"""CRIU's refusals, explained: the log lines that tell why a dump or restore failed, what each
means for the container, and which option or version helps. Runtimes wrap their CRIU failures
with `criu_failed`, so the error names the object CRIU refused."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CriuFailed
from .options import tail_of


@dataclass(frozen=True, slots=True)
class Diagnosis:
    line: str  # the line that told
    meaning: str
    hint: str


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    meaning: str  # may name the pattern's matched groups: {1}, {2} (and all of them: {0})
    hint: str


def _rule(pattern: str, meaning: str, hint: str) -> _Rule:
    return _Rule(re.compile(pattern), meaning, hint)


# First match wins: the specific lines come before the generic ones that follow them in a log.
RULES = (
    _rule(r"sockets: Can't get 1:(?:16|34) opt",
          "containers with network sockets cannot be checkpointed with CRIU < 4.2 on kernel >= 6.16 (the kernel "
          "refuses SO_PASSCRED/SO_PASSSEC on non-unix sockets, and older CRIU asks for them on every socket)",
          "install CRIU >= 4.2 (on Debian 12 and 13 scripts/setup.sh takes it from Debian forky)"),
    _rule(r'execvp\("(ip6?tables(?:-restore)?)", \.\.\.\) failed|^sh: \d+: (ip6?tables(?:-restore)?): not found',
          "CRIU's network lock runs {0}, which is not installed here",
          "install iptables, or a CRIU with nftables support (ckpt then uses CRIU's nftables lock; `ckpt check` "
          "tells which this host has)"),
    _rule(r"Locking network failed using nftables|Failed to lock TCP connection|Locking network failed|"
          r"Iptables configuration failed",
          "CRIU could not lock the container's network",
          "`ckpt check` tells whether this host has a network lock CRIU can use (iptables or nftables)"),
    _rule(r"Connected TCP socket, consider using",
          "the container has established TCP connections",
          "--tcp-established checkpoints them (the peers must still be there after the restore)"),
    _rule(r"Connected TCP socket in image",
          "the checkpoint holds established TCP connections, and this restore was not asked to restore them",
          "restore with --tcp-established (Podman allows it only under the container's own name)"),
    _rule(r"Can't connect inet socket back: Network is unreachable",
          "an established TCP connection could not be restored: the restored network namespace has no route "
          "for it (loopback down, or an interface missing)",
          "the connection's interface must exist at CRIU's setup-namespaces step (a prestart or createRuntime "
          "hook); see docs/network.md"),
    _rule(r"Can't bind inet socket.*Address already in use",
          "a socket of the checkpoint cannot take its address: another process here holds the port",
          "stop what holds the port, or restore into a container with a network namespace of its own"),
    _rule(r"External socket is used|Can't dump half of stream unix connection|"
          r"unix: Unix socket .* without peer",
          "a unix socket in the container is connected to a socket outside it",
          "--ext-unix-sk lets CRIU checkpoint it (the outside peer must exist again at restore)"),
    _rule(r"unix: Unix socket \d+ not found",
          "a process outside the container is connected to one of its unix sockets (the socket its listener "
          "accepted belongs to the client's network namespace, where CRIU does not look for it)",
          "disconnect it first (--ext-unix-sk does not help: that socket lives outside the container)"),
    _rule(r"Unknown shit \d+ \(anon_inode:\[io_uring\]\)",
          "CRIU cannot checkpoint io_uring instances (the program uses io_uring)",
          "no CRIU release supports io_uring yet: only a program that runs without it (many have a fallback to "
          "epoll or threads) can be checkpointed"),
    _rule(r"Some file locks are hold by dumping tasks",
          "processes in the container hold file locks",
          "--file-locks checkpoints them"),
    _rule(r"Can't dump ghost file (\S+) of (\d+) size",
          "{1} was deleted while still open and is {2} bytes, more than CRIU keeps of a deleted file",
          "close that file, or raise CRIU's limit: a line `ghost-limit 256M` in /etc/criu/runc.conf (runc, "
          "Podman) or /etc/criu/default.conf"),
    _rule(r"Can't lookup mount=\d+ for fd=(\d+) path=(\S+)",
          "descriptor {1} is open on {2}, a file on a mount the container does not have (for example a host file "
          "given to the container as its stdio)",
          "give the container stdio it owns (/dev/null, a pipe) or bind-mount that file in its spec"),
    _rule(r"level=error msg=\"stat (\S+): no such file or directory\"",
          "the container's spec bind-mounts {1}, which does not exist on this host",
          "create it (or the volume it belongs to) before restoring"),
    _rule(r"vdso: ELF header magic mismatch",
          "the restored memory is not what was dumped: this CRIU read the checkpoint's memory images wrongly "
          "(a CRIU older than 4.2 reads a 4.2 checkpoint's memory as empty)",
          "restore with a CRIU at least as new as the one that took the checkpoint (`ckpt inspect` shows it)"),
    _rule(r"Can't fork for (\d+): File exists",
          "pid {1}, which a process of the checkpoint had, is taken on this host",
          "stop the process that has it, or restore into a container (a pid namespace of its own)"),
)


def diagnose(text: str) -> Diagnosis | None:
    """The first known refusal in `text` (a CRIU log, a runtime's output), if any."""
    for line in text.splitlines():
        for rule in RULES:
            match = rule.pattern.search(line)
            if match:
                groups = [g for g in match.groups() if g is not None]
                meaning = rule.meaning.format(", ".join(groups), *groups)
                return Diagnosis(line.strip(), meaning, rule.hint)
    return None


def criu_failed(message: str, *, log: Path | None = None, output: str = "", hint: str | None = None) -> CriuFailed:
    """The error for a failed CRIU run whose log is `log`: its telling lines, and what they mean."""
    text = _read(log) if log else ""
    found = diagnose(text) or diagnose(output)
    if found:
        message = f"{message}: {found.meaning}"
        hint = f"{found.hint}; {hint}" if hint else found.hint
    return CriuFailed(message, output=output, log_tail=tail_of(text), hint=hint)


def _read(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""
