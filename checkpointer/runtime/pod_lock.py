"""The pod network lock: no packet moves in a pod's network namespace while its members are dumped
one after the other, or restored one after the other (docs/network.md, "Pods").

CRIU locks a member's network namespace for the length of that member's own dump or restore only
(its `CRIU` chain, dropped when that run ends). In a pod every member sits in the sandbox's one
namespace, so between two members' runs nothing would hold it: a member restored first talks at
once to a peer that is not restored yet, and the kernel answers with a reset. This lock holds the
whole namespace from before the first dump (or restore) to after the last one, and CRIU's own is
then skipped (`network-lock skip`).

    INPUT:  everything is dropped, loopback included (senders inside the pod see no error: their
            data waits in their queues and is sent again once the lock goes)
    OUTPUT: everything that leaves the pod (not lo) is dropped

Made with iptables-restore (the legacy or the nftables backend) in the namespace, through nsenter,
in a chain of ckpt's own that is removed exactly.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependency, RuntimeFailed

CHAIN = "CKPT-POD"
TIMEOUT = 30.0
HINT = "install iptables (Debian: apt-get install iptables): ckpt locks a pod's network with it"

_LOCK = (f"*filter\n:{CHAIN} - [0:0]\n-A {CHAIN} -j DROP\n-I INPUT 1 -j {CHAIN}\n"
         f"-I OUTPUT 1 ! -o lo -j {CHAIN}\nCOMMIT\n")
_UNLOCK = f"*filter\n-D INPUT -j {CHAIN}\n-D OUTPUT ! -o lo -j {CHAIN}\n-F {CHAIN}\n-X {CHAIN}\nCOMMIT\n"
_DROP_CHAIN = f"*filter\n-F {CHAIN}\n-X {CHAIN}\nCOMMIT\n"


@dataclass(frozen=True, slots=True)
class Tools:
    nsenter: str
    restore: tuple[str, ...]  # iptables-restore, and ip6tables-restore where this kernel has IPv6
    check: tuple[str, ...]  # iptables, ip6tables: to ask whether a jump is still there


def tools() -> Tools:
    """The programs the lock needs; MissingDependency if one is not installed."""
    nsenter = shutil.which("nsenter")
    v4, v4check = shutil.which("iptables-restore"), shutil.which("iptables")
    if not nsenter:
        raise MissingDependency("nsenter is not installed, and ckpt needs it to lock a pod's network",
                                hint="install util-linux")
    if not v4 or not v4check:
        raise MissingDependency("iptables is not installed, and ckpt locks a pod's network with it", hint=HINT)
    restore, check = [v4], [v4check]
    if Path("/proc/net/if_inet6").exists():
        v6, v6check = shutil.which("ip6tables-restore"), shutil.which("ip6tables")
        if not v6 or not v6check:
            raise MissingDependency("ip6tables is not installed, and ckpt locks a pod's IPv6 with it", hint=HINT)
        restore.append(v6)
        check.append(v6check)
    return Tools(nsenter, tuple(restore), tuple(check))


@dataclass(frozen=True, slots=True)
class NetnsLock:
    """The lock on the network namespace at `netns` (/proc/PID/ns/net of the sandbox's init)."""

    netns: str
    tools: Tools

    def _run(self, argv: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tools.nsenter, f"--net={self.netns}", "--", *argv], input=text,
                              capture_output=True, text=True, check=False, timeout=TIMEOUT,
                              stdin=None if text is not None else subprocess.DEVNULL)

    def lock(self) -> None:
        """Drop every packet in the namespace. (A lock a run that died left is doubled, not refused:
        unlock() removes every jump to the chain.)"""
        for restore in self.tools.restore:
            res = self._run([restore, "-w", "--noflush"], _LOCK)
            if res.returncode != 0:
                self.unlock(missing_ok=True)
                raise RuntimeFailed(f"cannot lock the pod's network ({os.path.basename(restore)} in {self.netns})",
                                    output=res.stderr.strip())

    def unlock(self, *, missing_ok: bool = False) -> None:
        """Let packets through again. A namespace that is gone has nothing left to unlock."""
        if not Path(self.netns).exists():
            return
        failed = []
        for restore, check in zip(self.tools.restore, self.tools.check, strict=True):
            if self._run([restore, "-w", "--noflush"], _UNLOCK).returncode == 0:
                continue  # the one lock this took, gone in one transaction
            # Something else: a lock left twice by a run that died, half a lock, none at all. Every
            # jump first (the nftables backend will not remove a chain that is jumped to), then the chain.
            for rule in (["INPUT", "-j", CHAIN], ["OUTPUT", "!", "-o", "lo", "-j", CHAIN]):
                for _ in range(4):
                    if self._run([check, "-w", "-D", *rule]).returncode != 0:
                        break
            res = self._run([restore, "-w", "--noflush"], _DROP_CHAIN)
            if res.returncode != 0 and self._run([check, "-w", "-n", "-L", CHAIN]).returncode == 0:
                failed.append(f"{os.path.basename(restore)}: {res.stderr.strip()}")
        if failed and Path(self.netns).exists() and not missing_ok:
            raise RuntimeFailed(f"cannot unlock the pod's network in {self.netns}", output="\n".join(failed),
                                hint=f"remove the {CHAIN} chain by hand: nsenter --net={self.netns} "
                                     f"iptables -D INPUT -j {CHAIN}; iptables -F {CHAIN}; iptables -X {CHAIN}")

    def held(self) -> bool:
        """Whether the lock is in place now (for tests and checks)."""
        return self._run([self.tools.check[0], "-w", "-C", "INPUT", "-j", CHAIN]).returncode == 0


def for_pid(pid: int) -> NetnsLock:
    """The lock on the network namespace process `pid` is in."""
    return NetnsLock(f"/proc/{pid}/ns/net", tools())
