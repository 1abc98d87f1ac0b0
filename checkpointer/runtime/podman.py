"""Podman: container state, checkpoint export and import-restore through the `podman` CLI.

Podman drives the OCI runtime (runc here), which drives CRIU. Its export archive (`--export`)
holds the CRIU images in `checkpoint/` plus Podman's own files (config.dump, spec.dump, ...);
`podman container restore --import` takes the same archive back.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..criu.diagnose import criu_failed
from ..criu.options import CriuOptions
from ..errors import AlreadyExists, MissingDependency, NotFound, RuntimeFailed, UsageError
from . import Runner, Which

INSTALL_HINT = "install podman (Debian: apt-get install podman)"
TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class PodmanContainer:
    id: str
    name: str
    status: str  # running, paused, exited, created, ...
    pid: int
    image_name: str  # the name the container was created from
    image_id: str
    runtime: str  # the OCI runtime: runc, crun
    spec_path: str = ""  # the runtime spec Podman gave the OCI runtime


@dataclass(frozen=True, slots=True)
class Imported:
    id: str
    warning: str = ""  # why the container did not get its checkpoint's IP address back, when it did not


def installed(binary: str = "podman", which: Which = shutil.which) -> bool:
    return which(binary) is not None


class Podman:
    name = "podman"

    def __init__(self, *, binary: str = "podman", runner: Runner = subprocess.run,
                 which: Which = shutil.which) -> None:
        path = which(binary)
        if not path:
            raise MissingDependency("podman is not installed", hint=INSTALL_HINT)
        self.binary = path
        self._runner = runner

    def _run(self, *args: str, timeout: float = TIMEOUT, criu: Path | None = None) -> subprocess.CompletedProcess:
        # A new session keeps a Ctrl-C meant for ckpt away from podman and CRIU mid-dump.
        # Podman runs the OCI runtime with an environment of its own (PATH, XDG_RUNTIME_DIR), so a
        # CRIU config reaches CRIU through `criu`, a wrapper runc is told to use as its CRIU binary.
        flags = ["--runtime-flag", f"criu={criu}"] if criu else []
        try:
            return self._runner([self.binary, *flags, *args], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailed(f"podman {args[0]} did not finish within {timeout:.0f}s") from exc

    def version(self) -> str:
        out = self._run("version", "--format", "{{.Client.Version}}").stdout.strip()
        return out or "unknown"

    def exists(self, name: str) -> bool:
        return self._run("container", "exists", name).returncode == 0

    def container(self, name: str) -> PodmanContainer:
        res = self._run("container", "inspect", name)
        if res.returncode != 0:
            raise NotFound(f"no Podman container {name!r}", hint="`podman ps -a` lists the containers")
        try:
            obj = json.loads(res.stdout)[0]
            return PodmanContainer(id=obj["Id"], name=obj["Name"], status=obj["State"]["Status"],
                                   pid=int(obj["State"].get("Pid") or 0),
                                   image_name=obj.get("ImageName") or "", image_id=obj.get("Image") or "",
                                   runtime=obj.get("OCIRuntime") or "", spec_path=obj.get("OCIConfigPath") or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RuntimeFailed(f"cannot read `podman container inspect {name}`: {exc!r}") from None

    def checkpoint(self, name: str, archive: Path, options: CriuOptions, *, with_volumes: bool = False,
                   criu: Path | None = None) -> None:
        """Checkpoint `name` into an uncompressed export archive. On failure CRIU resumes the container.
        `criu`: a CRIU wrapper for runc (criu/config.py criu_wrapper)."""
        args = ["container", "checkpoint", "--export", str(archive), "--compress", "none"]
        args += options.flags(without=_NO_FLAG)
        if not with_volumes:
            args.append("--ignore-volumes")
        res = self._run(*args, name, criu=criu)
        if res.returncode != 0:
            raise _failed(f"podman could not checkpoint {name!r}", res,
                          hint="the container was left running; the lines above say why")

    def restore_in_place(self, name: str, options: CriuOptions, *, criu: Path | None = None) -> None:
        """Restore a container podman has just checkpointed, from the images it kept."""
        res = self._run("container", "restore", *options.for_restore().flags(without=_NO_FLAG), name, criu=criu)
        if res.returncode != 0:
            raise _failed(f"podman could not restore {name!r} in place", res)

    def restore_import(self, archive: Path, name: str, options: CriuOptions, *, original_name: str,
                       criu: Path | None = None) -> Imported:
        """Create and restore container `name` from an export archive.

        Under its original name Podman gives the container its checkpoint's id, IP and MAC
        address back; if another container has that address or that id here, ckpt restores it
        with new ones. Under another name Podman always gives new ones, and refuses
        --tcp-established."""
        if self.exists(name):
            raise AlreadyExists(f"a Podman container named {name!r} exists already",
                                hint="pick another name with --name, or remove that container")
        restore = options.for_restore()
        renamed = name != original_name
        if renamed and restore.tcp_established:
            raise UsageError(f"Podman restores established TCP connections only under the container's own "
                             f"name ({original_name!r}), not as {name!r}",
                             hint="leave --name out, or save the container without --tcp-established")
        args = ["container", "restore", "--import", str(archive), *restore.flags(without=_NO_FLAG)]
        res = self._run(*args, *(["--name", name] if renamed else []), criu=criu)
        warning = ""
        if res.returncode != 0 and not renamed and _address_taken(res):
            self.remove(name)  # Podman leaves the container it created behind
            warning = ("the checkpoint's IP address is taken on this host, so Podman gave the container a new one "
                       "(connections to the old address are gone)")
            res = self._run(*args, "--ignore-static-ip", "--ignore-static-mac", criu=criu)
        elif res.returncode != 0 and not renamed and "ID is already in use" in res.stderr:
            if restore.tcp_established:
                raise AlreadyExists(f"a Podman container with the checkpoint's id exists here (not named {name!r}), "
                                    "and established TCP connections come back only with that id",
                                    hint="remove that container (podman ps -a shows it)")
            warning = ("a container with the checkpoint's id exists here under another name, so Podman restored "
                       "this one with a new id and a new IP address")
            res = self._run(*args, "--name", name, criu=criu)
        if res.returncode != 0:
            raise _failed(f"podman could not restore {name!r}", res)
        lines = res.stdout.split()
        return Imported(lines[-1] if lines else name, warning)

    def remove(self, name: str) -> None:
        res = self._run("rm", "--force", "--time", "0", name)
        if res.returncode != 0 and self.exists(name):
            raise RuntimeFailed(f"podman could not remove {name!r}", output=_said(res))

    def image_exists(self, ref: str) -> bool:
        return self._run("image", "exists", ref).returncode == 0

    def image_digest(self, ref: str) -> str | None:
        res = self._run("image", "inspect", "--format", "{{.Digest}}", ref)
        digest = res.stdout.strip()
        return digest if res.returncode == 0 and digest.startswith("sha256:") else None

    def pull(self, ref: str, *, tls_verify: bool = True) -> None:
        res = self._run("pull", "--quiet", f"--tls-verify={'true' if tls_verify else 'false'}", ref)
        if res.returncode != 0:
            raise NotFound(f"the image {ref!r} is not in Podman's storage here and cannot be pulled",
                           hint="pull or load it first (podman pull / podman load), or push it to a "
                                "registry this host can reach; --insecure allows a plain-HTTP registry")

    def remove_image(self, ref: str) -> None:
        self._run("rmi", ref)

    def is_running(self, name: str) -> bool:
        try:
            return self.container(name).status == "running"
        except NotFound:
            return False


# podman has no flags for external unix sockets or shell jobs: it sets what its containers need.
_NO_FLAG = ("ext_unix_sk", "shell_job")


def _said(res: subprocess.CompletedProcess) -> str:
    return (res.stderr.strip() or res.stdout.strip())[-4000:]


def _failed(message: str, res: subprocess.CompletedProcess, hint: str | None = None) -> RuntimeFailed:
    return criu_failed(message, log=_criu_log_in(res.stderr), output=_said(res), hint=hint)


def _criu_log_in(stderr: str) -> Path | None:
    """The CRIU log podman kept, which it names in its error."""
    for word in stderr.replace('"', " ").split():
        if word.endswith((".log", ".log:")) and word.startswith("/") and Path(word.rstrip(":")).is_file():
            return Path(word.rstrip(":"))
    return None


def _address_taken(res: subprocess.CompletedProcess) -> bool:
    """Podman failed because the IP address it was asked to give back is in use here (in the words
    of CNI's and of netavark's address management)."""
    text = res.stderr.lower()
    return "requested ip address" in text and ("not available" in text or "already allocated" in text)
