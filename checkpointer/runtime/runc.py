"""runc: container state, checkpoint and restore through `runc` itself (which drives CRIU)."""
from __future__ import annotations

import json
import os
import select
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ..criu import config as criu_config
from ..criu.diagnose import criu_failed
from ..criu.options import CriuOptions
from ..errors import AlreadyExists, MissingDependency, NotFound, RuntimeFailed
from . import Runner, Which

STOP_WAIT = 10.0  # seconds to wait for a killed container's init to go before deleting it anyway


@dataclass(frozen=True, slots=True)
class ContainerState:
    id: str
    pid: int
    status: str
    bundle: Path
    annotations: dict[str, str]


class Runc:
    name = "runc"

    def __init__(self, *, root: Path | None = None, binary: str = "runc", runner: Runner = subprocess.run,
                 which: Which = shutil.which) -> None:
        path = which(binary)
        if not path:
            raise MissingDependency("runc is not installed", hint="install runc (Debian: apt-get install runc)")
        self.binary = path
        self.root = Path(root) if root else None
        self._runner = runner

    def _cmd(self, *args: str) -> list[str]:
        base = [self.binary]
        if self.root:
            base += ["--root", str(self.root)]
        return base + list(args)

    def _run(self, args: list[str], log: Path | None = None,
             criu_conf: Path | None = None) -> subprocess.CompletedProcess:
        # Output goes to a file, not a pipe: on restore runc hands its stdio to the restored
        # container, and a pipe would then stay open for the container's lifetime.
        # A new session keeps a Ctrl-C meant for ckpt away from runc and CRIU mid-dump.
        # CKPT_HOOKS=off: ckpt's own dumps are not published a second time by the runtime hook.
        # runc passes its environment on to CRIU, which reads `criu_conf` from it (criu/config.py).
        env = {**os.environ, "CKPT_HOOKS": "off", **criu_config.environment(criu_conf)}
        if log is None:
            return self._runner(self._cmd(*args), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True, check=False, env=env)
        with open(log, "w+") as out:
            res = self._runner(self._cmd(*args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True, check=False, env=env)
            out.seek(0)
            return subprocess.CompletedProcess(res.args, res.returncode, out.read(), "")

    def version(self) -> str:
        out = self._run(["--version"]).stdout
        first = out.splitlines()[0] if out else ""
        return first.split()[-1] if first else "unknown"

    def state(self, container_id: str) -> ContainerState:
        res = self._run(["state", container_id])
        if res.returncode != 0:
            raise NotFound(f"no runc container {container_id!r}" + (f" under {self.root}" if self.root else ""),
                           hint="`runc list` shows the containers; pass --runc-root if they live elsewhere")
        obj = json.loads(res.stdout)
        return ContainerState(id=obj["id"], pid=int(obj.get("pid", 0)), status=obj.get("status", ""),
                              bundle=Path(obj.get("bundle", "")), annotations=obj.get("annotations") or {})

    def list(self) -> list[ContainerState]:
        """Every container under this root (`runc list`), in any state."""
        res = self._run(["list", "--format", "json"])
        if res.returncode != 0:
            raise RuntimeFailed("runc could not list its containers", output=res.stderr.strip())
        try:
            found = json.loads(res.stdout or "null") or []
            return [ContainerState(id=obj["id"], pid=int(obj.get("pid", 0)), status=obj.get("status", ""),
                                   bundle=Path(obj.get("bundle", "")), annotations=obj.get("annotations") or {})
                    for obj in found]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RuntimeFailed(f"cannot read `runc list`: {exc!r}") from None

    def exists(self, container_id: str) -> bool:
        try:
            self.state(container_id)
        except NotFound:
            return False
        return True

    def checkpoint(self, container_id: str, images: Path, work: Path, options: CriuOptions, *,
                   criu_conf: Path | None = None) -> None:
        """`criu_conf`: a CRIU config file for this dump (criu/config.py)."""
        args = ["checkpoint", "--image-path", str(images), "--work-path", str(work)]
        args += options.flags()
        res = self._run(args + [container_id], work / "runc.log", criu_conf)
        if res.returncode != 0:
            raise criu_failed(f"runc could not checkpoint {container_id!r}", log=work / "dump.log",
                              output=res.stdout.strip(),
                              hint="the container was left running; the CRIU log lines above say why")

    def restore(self, container_id: str, bundle: Path, images: Path, work: Path,
                options: CriuOptions, *, criu_conf: Path | None = None) -> ContainerState:
        if self.exists(container_id):
            raise AlreadyExists(f"a runc container named {container_id!r} exists already",
                                hint="pick another name with --name, or remove that container")
        args = ["restore", "--detach", "--image-path", str(images), "--work-path", str(work),
                "--bundle", str(bundle)] + options.for_restore().flags()
        res = self._run(args + [container_id], work / "runc.log", criu_conf)
        if res.returncode != 0:
            self.delete(container_id)
            raise criu_failed(f"runc could not restore {container_id!r}", log=work / "restore.log",
                              output=res.stdout.strip())
        return self.state(container_id)

    def delete(self, container_id: str) -> None:
        res = self._run(["delete", "--force", container_id])
        if res.returncode != 0 and self.exists(container_id):
            raise RuntimeFailed(f"runc could not delete {container_id!r}", output=res.stderr.strip())

    def stop(self, container_id: str, pid: int) -> None:
        """Kill the container whose init is `pid` (running or paused) and delete it. Not just
        `delete --force`: runc 1.1 sleeps 100 ms after its SIGKILL before it looks again; a kill
        of every process (runc thaws a paused container for it) and a wait for the init to be
        gone take a third of that."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone already (or no pidfd here): delete does the rest
            pidfd = None
        try:
            if pidfd is not None and self._run(["kill", "--all", container_id, "KILL"]).returncode == 0:
                select.select([pidfd], [], [], STOP_WAIT)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        self.delete(container_id)

    def pause(self, container_id: str) -> None:
        res = self._run(["pause", container_id])
        if res.returncode != 0:
            raise RuntimeFailed(f"runc could not pause {container_id!r}", output=res.stderr.strip())

    def resume(self, container_id: str) -> None:
        res = self._run(["resume", container_id])
        if res.returncode != 0:
            raise RuntimeFailed(f"runc could not resume {container_id!r}", output=res.stderr.strip())

    def resume_guard(self, container_id: str, marker: str) -> ResumeGuard:
        """Start a guard that resumes `container_id` if ckpt dies; `marker` is in the dump's command line."""
        return ResumeGuard(self._cmd(), container_id, marker)

    def is_running(self, container_id: str) -> bool:
        try:
            return self.state(container_id).status == "running"
        except NotFound:
            return False


def load_spec(bundle: Path) -> dict:
    try:
        return json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeFailed(f"cannot read the runtime spec of bundle {bundle}: {exc}") from None


def rootfs_of(bundle: Path, spec: dict) -> Path:
    root = Path(spec.get("root", {}).get("path", "rootfs"))
    return root if root.is_absolute() else bundle / root


@contextmanager
def criu_leaves_tmp_as_it_was(rootfs: Path) -> Iterator[None]:
    """CRIU makes (and removes) a directory in the container's /tmp while it dumps (runc 1.1.5,
    CRIU 4.2.1): /tmp's mtime moves, and with it the digest of the rootfs layer, so two
    checkpoints of one container, or two containers of one image, would never share their rootfs.
    Dumped frozen, the container itself changed nothing meanwhile: /tmp's times go back."""
    tmp = rootfs / "tmp"
    try:
        before = os.stat(tmp, follow_symlinks=False)
    except OSError:
        before = None
    try:
        yield
    finally:
        if before is not None and stat.S_ISDIR(before.st_mode):
            with suppress(OSError):
                os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)


class ResumeGuard:
    """Resumes a paused container if ckpt dies before saying otherwise, even by SIGKILL: a small
    process in its own session waits on a pipe only ckpt holds; if the pipe closes without the
    word "keep", it waits for the dump in flight (marked by `marker`) and resumes the container."""

    def __init__(self, runc_cmd: list[str], container_id: str, marker: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "checkpointer.runtime.resume_guard", marker, container_id, *runc_cmd],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd=Path(__file__).resolve().parents[2])

    def keep(self) -> None:
        """All is well: the caller takes care of the container from here."""
        self._finish(b"keep\n")

    def fire(self) -> None:
        """Resume the container now (and wait until that is done)."""
        self._finish(b"")

    def _finish(self, verdict: bytes) -> None:
        assert self._proc.stdin is not None
        if not self._proc.stdin.closed:
            try:
                self._proc.stdin.write(verdict)
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        self._proc.wait()
