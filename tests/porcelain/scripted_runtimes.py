"""runc and Podman as scripts: each keeps its containers in a dict and answers the command lines
runtime/runc.py and runtime/podman.py send (the injected runner) the way runc 1.1 and Podman 4.3 do,
so the real engines run as any user. A container's init is a real process (sleep) that a kill ends."""
from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from criu_fixture import write_images


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@dataclass
class Ctr:
    status: str
    bundle: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc and self.status != "stopped" else 0

    def end(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        self.status = "stopped"


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@dataclass
class Script:
    """What both scripted runtimes share: the containers, the calls, and failures to answer with."""

    containers: dict[str, Ctr] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # verb -> what the runtime says on stderr

    def answer(self, cmd: list[str], args: list[str], verb: str, kwargs: dict[str, Any],
               out: str = "", code: int = 0) -> subprocess.CompletedProcess:
        if verb in self.fail:
            out, code = self.fail[verb], 1
        stdout = kwargs.get("stdout")
        if hasattr(stdout, "write"):  # runc's log file
            stdout.write(out)
            return subprocess.CompletedProcess(cmd, code)
        return subprocess.CompletedProcess(cmd, code, out if code == 0 else "", out if code else "")

    def stop_all(self) -> None:
        for ctr in self.containers.values():
            ctr.end()


class ScriptedRunc(Script):
    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        args = cmd[1:]
        if args[:1] == ["--root"]:
            args = args[2:]
        verb = args[0]
        self.calls.append(args)
        if verb in self.fail:
            return self.answer(cmd, args, verb, kwargs)
        name = args[-1]
        ctr = self.containers.get(name)
        if verb == "--version":
            return self.answer(cmd, args, verb, kwargs, "runc version 1.1.5\ncommit: v1.1.5\nspec: 1.0.2-dev\n")
        if verb in ("state", "pause", "resume", "kill", "delete", "checkpoint") and ctr is None:
            return self.answer(cmd, args, verb, kwargs, f"container does not exist: {name}", 1)
        if verb == "state":
            return self.answer(cmd, args, verb, kwargs, json.dumps(
                {"id": name, "pid": ctr.pid, "status": ctr.status, "bundle": str(ctr.bundle), "annotations": {}}))
        if verb in ("pause", "resume"):
            ctr.status = "paused" if verb == "pause" else "running"
        elif verb == "kill":
            ctr.end()
        elif verb == "delete":
            ctr.end()
            del self.containers[name]
        elif verb == "checkpoint":
            write_images(Path(_option(args, "--image-path")))
            if "--leave-running" not in args:
                ctr.end()
                del self.containers[name]
        elif verb == "restore":
            if ctr is not None:
                return self.answer(cmd, args, verb, kwargs, f"container {name} already exists", 1)
            assert (Path(_option(args, "--image-path")) / "pstree.img").is_file()
            self.containers[name] = Ctr("running", Path(_option(args, "--bundle")), sleeper())
        return self.answer(cmd, args, verb, kwargs)


class ScriptedPodman(Script):
    """Podman's containers have ids; its export archive holds checkpoint/ and Podman's files."""

    image_digest = "sha256:" + "ab" * 32
    imported: list[Path]

    def __init__(self) -> None:
        super().__init__()
        self.imported = []

    def _inspect(self, name: str) -> str:
        ctr = self.containers[name]
        return json.dumps([{"Id": f"id-{name}", "Name": name, "State": {"Status": ctr.status, "Pid": ctr.pid},
                            "ImageName": "localhost/app:v1", "Image": "img-1", "OCIRuntime": "runc",
                            "OCIConfigPath": ""}])

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        args = cmd[1:]
        while args[:1] == ["--runtime-flag"]:
            args = args[2:]
        verb = " ".join(args[:2])
        self.calls.append(args)
        if verb in self.fail:
            return self.answer(cmd, args, verb, kwargs)
        name = args[-1].removeprefix("id-")
        if verb == "container exists":
            return self.answer(cmd, args, verb, kwargs, code=0 if name in self.containers else 1)
        if verb == "container inspect":
            if name not in self.containers:
                return self.answer(cmd, args, verb, kwargs, f"no such container {name}", 125)
            return self.answer(cmd, args, verb, kwargs, self._inspect(name))
        if verb == "image inspect":
            return self.answer(cmd, args, verb, kwargs, self.image_digest)
        if verb == "image exists":
            return self.answer(cmd, args, verb, kwargs)
        if verb == "container checkpoint":
            self._export(Path(_option(args, "--export")))
            if "--leave-running" not in args:
                self.containers[name].end()
                self.containers[name].status = "exited"
        elif verb == "container restore" and "--import" in args:
            archive = Path(_option(args, "--import"))
            with tarfile.open(archive) as tar:
                assert {"config.dump", "spec.dump", "checkpoint/pstree.img"} <= set(tar.getnames())
            self.imported.append(archive)
            new = _option(args, "--name") if "--name" in args else "web"
            self.containers[new] = Ctr("running", None, sleeper())
            return self.answer(cmd, args, verb, kwargs, f"id-{new}\n")
        elif verb == "container restore":
            self.containers[name].proc = sleeper()
            self.containers[name].status = "running"
        elif args[0] == "rm":
            self.containers.pop(name).end()
        return self.answer(cmd, args, verb, kwargs)

    def _export(self, path: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self._write_export(Path(tmp), path)

    def _write_export(self, staging: Path, path: Path) -> None:
        write_images(staging / "checkpoint")
        (staging / "config.dump").write_text(json.dumps({"id": "id-web", "name": "web",
                                                         "rootfsImageName": "localhost/app:v1"}))
        (staging / "spec.dump").write_text(json.dumps({"ociVersion": "1.0.2", "annotations":
                                                       {"io.container.manager": "libpod"}}))
        (staging / "rootfs-diff.tar").write_bytes(b"\0" * 1024)
        with tarfile.open(path, "w") as tar:
            for entry in sorted(staging.iterdir()):
                tar.add(entry, arcname=entry.name)
