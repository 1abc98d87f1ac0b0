"""Podman's pods, through the `podman pod` CLI. Podman 4.3 has no pod checkpoint of its own: ckpt
checkpoints a pod's members one by one (runtime/podman.py, `podman container checkpoint`) while it
holds them all frozen through runc, and restores them into a new pod (`podman container restore
--import F --pod ID`)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..criu.options import CriuOptions
from ..errors import AlreadyExists, NotFound, RuntimeFailed
from .podman import _NO_FLAG, Podman, _failed, _said

RUNC_ROOT = Path("/run/runc")  # where Podman (as root) has runc keep its containers' state


@dataclass(frozen=True, slots=True)
class PodmanPod:
    id: str
    name: str
    infra_id: str
    shared: tuple[str, ...]  # Podman's names: ipc, net, uts, pid, cgroup
    containers: tuple[tuple[str, str, str], ...]  # (id, name, state) of every container but the infra
    labels: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""  # `podman pod inspect` as Podman said it


@dataclass(frozen=True, slots=True)
class Infra:
    image: str
    command: tuple[str, ...]
    network: str  # the infra's NetworkMode: none, bridge, host, slirp4netns, ...
    pid: int
    raw: bytes = b""


class PodmanPods(Podman):
    def pod_exists(self, name: str) -> bool:
        return self._run("pod", "exists", name).returncode == 0

    def pod(self, name: str) -> PodmanPod:
        res = self._run("pod", "inspect", name)
        if res.returncode != 0:
            raise NotFound(f"no Podman pod {name!r}", hint="`podman pod ps` lists the pods")
        try:
            obj: Any = json.loads(res.stdout)
            obj = obj[0] if isinstance(obj, list) else obj
            infra = obj.get("InfraContainerID") or ""
            members = tuple((c["Id"], c["Name"], c.get("State", "")) for c in obj.get("Containers") or ()
                            if c["Id"] != infra)
            return PodmanPod(id=obj["Id"], name=obj["Name"], infra_id=infra,
                             shared=tuple(obj.get("SharedNamespaces") or ()), containers=members,
                             labels=dict(obj.get("Labels") or {}), raw=res.stdout.encode())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RuntimeFailed(f"cannot read `podman pod inspect {name}`: {exc!r}") from None

    def infra(self, infra_id: str) -> Infra:
        res = self._run("container", "inspect", infra_id)
        if res.returncode != 0:
            raise NotFound(f"the pod's infra container {infra_id!r} is gone")
        try:
            obj = json.loads(res.stdout)[0]
            entrypoint = obj["Config"].get("Entrypoint") or []
            entrypoint = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
            command = tuple(entrypoint + list(obj["Config"].get("Cmd") or []))
            return Infra(image=obj.get("ImageName") or "", command=command,
                         network=str((obj.get("HostConfig") or {}).get("NetworkMode") or ""),
                         pid=int(obj["State"].get("Pid") or 0), raw=res.stdout.encode())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RuntimeFailed(f"cannot read `podman container inspect {infra_id}`: {exc!r}") from None

    def create_pod(self, name: str, *, share: tuple[str, ...], infra: Infra, labels: dict[str, str]) -> str:
        """A new pod like the one saved: the same namespaces shared, the same infra image and
        command, the same kind of network. Returns its id."""
        if self.pod_exists(name):
            raise AlreadyExists(f"a Podman pod named {name!r} exists already",
                                hint="restore the pod under another name with --name NEWPOD, or remove it")
        args = ["pod", "create", "--name", name, "--share", ",".join(share)]
        if infra.image:
            args += ["--infra-image", infra.image]
        if infra.command:
            args += ["--infra-command", infra.command[0]]
        if infra.network in ("none", "host"):
            args += ["--network", infra.network]
        for key, value in sorted(labels.items()):
            args += ["--label", f"{key}={value}"]
        res = self._run(*args)
        if res.returncode != 0:
            raise RuntimeFailed(f"podman could not create pod {name!r}", output=_said(res))
        return res.stdout.strip().splitlines()[-1]

    def start_pod(self, name: str) -> None:
        res = self._run("pod", "start", name)
        if res.returncode != 0:
            raise RuntimeFailed(f"podman could not start pod {name!r}", output=_said(res))

    def remove_pod(self, name: str) -> None:
        res = self._run("pod", "rm", "--force", "--time", "0", name)
        if res.returncode != 0 and self.pod_exists(name):
            raise RuntimeFailed(f"podman could not remove pod {name!r}", output=_said(res))

    def restore_into_pod(self, archive: Path, pod_id: str, name: str | None, options: CriuOptions, *,
                         criu: Path | None = None) -> str:
        """Create and restore a member from its export archive into pod `pod_id` (under `name`, or
        the name it was saved with). Returns the new container's id."""
        args = ["container", "restore", "--import", str(archive), "--pod", pod_id,
                *options.for_restore().flags(without=_NO_FLAG), *(["--name", name] if name else [])]
        res = self._run(*args, criu=criu)
        if res.returncode != 0:
            raise _failed(f"podman could not restore {name or archive.name!r} into pod {pod_id[:12]}", res)
        lines = res.stdout.split()
        return lines[-1] if lines else (name or "")
