"""Podman pods through the pod pipelines as any user: Podman and its runc scripted (scripted_runtimes.py
plus `podman pod`), the lock and the guard stood in for: the members frozen through runc, exported
one by one, the pod removed only once stored; the new pod made like the old one, each member
restored into it, and all of it removed when a member cannot be restored."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from criu_fixture import write_images
from scripted_runtimes import Ctr, ScriptedPodman, _option, sleeper
from test_pod_runc import FakeGuard, FakeLock

from checkpointer.criu import netns
from checkpointer.criu.options import CriuOptions
from checkpointer.errors import CriuFailed, UsageError
from checkpointer.format import pod as podfmt
from checkpointer.porcelain.engines.base import DumpOptions
from checkpointer.porcelain.home import Home
from checkpointer.porcelain.pod import engines as pod_engines
from checkpointer.porcelain.pod import freeze
from checkpointer.porcelain.pod.places import ref_or_path
from checkpointer.porcelain.pod.podman import PodmanPods
from checkpointer.porcelain.pod.restore import PodRestoreRequest, restore_if_pod
from checkpointer.porcelain.pod.save import PodSaveRequest, save_pod
from checkpointer.runtime.podman_pod import PodmanPods as Client
from checkpointer.runtime.runc import Runc


class PodPodman(ScriptedPodman):
    """Podman with one pod, "shop": its infra and two members, shop-web and shop-db."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.pods: dict[str, dict[str, Any]] = {}

    def add_pod(self, name: str) -> None:
        self.containers[f"{name}-infra"] = Ctr("running", None, sleeper())
        for member in ("web", "db"):
            self.containers[f"{name}-{member}"] = Ctr("running", None, sleeper())
        self.pods[name] = {"Id": f"podid-{name}", "members": [f"{name}-web", f"{name}-db"]}

    def _pod_json(self, name: str) -> str:
        pod = self.pods[name]
        containers = [{"Id": f"id-{m}", "Name": m, "State": self.containers[m].status} for m in pod["members"]
                      if m in self.containers]  # a container removed (`podman rm`) leaves its pod
        containers.append({"Id": f"id-{name}-infra", "Name": f"{name}-infra", "State": "running"})
        return json.dumps({"Id": pod["Id"], "Name": name, "InfraContainerID": f"id-{name}-infra",
                           "SharedNamespaces": ["uts", "ipc", "net"], "Containers": containers,
                           "Labels": {"team": "shop"}})

    def _pod_of(self, ref: str) -> str | None:
        return next((n for n, p in self.pods.items() if ref in (n, p["Id"])), None)

    def __call__(self, cmd: list[str], **kwargs: Any):  # noqa: ANN204
        args = cmd[1:]
        while args[:1] == ["--runtime-flag"]:
            args = args[2:]
        verb = " ".join(args[:2])
        if args[0] == "pod":
            self.calls.append(args)
            self.log.append(f"podman {verb}")
            pod = self._pod_of(args[-1])
            if verb == "pod exists":
                return self.answer(cmd, args, verb, kwargs, code=0 if pod else 1)
            if verb == "pod inspect":
                return self.answer(cmd, args, verb, kwargs, self._pod_json(pod) if pod else "no pod", 0 if pod else 125)
            if verb == "pod create":
                name = _option(args, "--name")
                self.containers[f"{name}-infra"] = Ctr("created", None, None)
                self.pods[name] = {"Id": f"podid-{name}", "members": [], "create": args}
                return self.answer(cmd, args, verb, kwargs, f"podid-{name}\n")
            if verb == "pod start":
                self.containers[f"{pod}-infra"] = Ctr("running", None, sleeper())
            elif verb == "pod rm":
                if pod:
                    for member in [*self.pods.pop(pod)["members"], f"{pod}-infra"]:
                        if member in self.containers:
                            self.containers.pop(member).end()
            return self.answer(cmd, args, verb, kwargs)
        if verb == "container inspect" and args[-1].removeprefix("id-").endswith("-infra"):
            name = args[-1].removeprefix("id-")
            ctr = self.containers[name]
            return self.answer(cmd, args, verb, kwargs, json.dumps([{
                "Id": f"id-{name}", "ImageName": "localhost/pause:v1", "Config": {"Entrypoint": "/bin/pause"},
                "HostConfig": {"NetworkMode": "none"}, "State": {"Status": ctr.status, "Pid": ctr.pid}}]))
        if verb == "container checkpoint":
            self.log.append(f"podman checkpoint {args[-1]}")
            self._export_as(Path(_option(args, "--export")), args[-1].removeprefix("id-"))
            return self.answer(cmd, args, verb, kwargs)
        if verb == "container restore" and "--pod" in args:
            self.calls.append(args)
            archive = Path(_option(args, "--import"))
            with tarfile.open(archive) as tar:
                config = json.load(tar.extractfile("config.dump"))  # type: ignore[arg-type]
            name = _option(args, "--name") if "--name" in args else config["name"]
            self.log.append(f"podman restore {name}")
            self.containers[name] = Ctr("running", None, sleeper())
            pod = self._pod_of(_option(args, "--pod"))
            assert pod is not None
            self.pods[pod]["members"].append(name)
            return self.answer(cmd, args, verb, kwargs, f"id-{name}\n")
        return super().__call__(cmd, **kwargs)

    def _export_as(self, path: Path, name: str) -> None:
        staging = path.parent / "staging"
        write_images(staging / "checkpoint")
        (staging / "config.dump").write_text(json.dumps({"id": f"id-{name}", "name": name,
                                                         "rootfsImageName": "localhost/app:v1", "pod": "podid"}))
        (staging / "spec.dump").write_text(json.dumps({"ociVersion": "1.0.2", "annotations":
                                                       {"io.container.manager": "libpod"}}))
        (staging / "rootfs-diff.tar").write_bytes(b"\0" * 1024)
        with tarfile.open(path, "w") as tar:
            for entry in sorted(staging.iterdir()):
                tar.add(entry, arcname=entry.name)


class PodmansRunc:
    """The runc Podman runs: its containers are Podman's, by id."""

    def __init__(self, podman: PodPodman) -> None:
        self.podman = podman

    def __call__(self, cmd: list[str], **kwargs: Any):  # noqa: ANN204
        args = cmd[1:]
        if args[:1] == ["--root"]:
            args = args[2:]
        verb = args[0]
        if verb == "--version":
            return self.podman.answer(cmd, args, verb, kwargs, "runc version 1.1.5\n")
        name = (args[-2] if verb == "kill" else args[-1]).removeprefix("id-")
        ctr = self.podman.containers.get(name)
        if ctr is None:
            return self.podman.answer(cmd, args, verb, kwargs, "container does not exist", 1)
        self.podman.log.append(f"runc {verb} {name}")
        if verb == "state":
            return self.podman.answer(cmd, args, verb, kwargs, json.dumps(
                {"id": f"id-{name}", "pid": ctr.pid, "status": ctr.status, "bundle": "/x", "annotations": {}}))
        if verb in ("pause", "resume"):
            ctr.status = "paused" if verb == "pause" else "running"
        elif verb == "kill":
            ctr.end()
        return self.podman.answer(cmd, args, verb, kwargs)


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    log: list[str] = []
    podman = PodPodman(log)
    podman.add_pod("shop")
    locks: list[FakeLock] = []

    def lock_for(pid: int) -> FakeLock:
        locks.append(FakeLock(pid, log))
        return locks[-1]

    runc_script = PodmansRunc(podman)
    runc = Runc(root=Path("/run/runc"), runner=runc_script, which=lambda binary: f"/usr/sbin/{binary}")

    class Resumer:  # the FakeGuard resumes through the script's containers, keyed by name
        containers = {f"id-{name}": ctr for name, ctr in podman.containers.items()}
        log = podman.log

    def guard(**kw):  # noqa: ANN003, ANN202
        Resumer.containers = {f"id-{name}": ctr for name, ctr in podman.containers.items()}
        return FakeGuard(Resumer, **kw)  # type: ignore[arg-type]

    host = freeze.Host(lock_for=lock_for, guard=guard)
    client = Client(runner=podman, which=lambda binary: f"/usr/bin/{binary}")
    monkeypatch.setitem(pod_engines._ENGINES, "podman", lambda ctx: PodmanPods(ctx, podman=client, runc=runc,
                                                                               host=host))
    monkeypatch.setitem(pod_engines._ENGINES, "runc", lambda ctx: _NoRunc())
    monkeypatch.setattr(netns, "read", lambda pid, namespace: netns.NetworkState(namespace, None, ("lo",)))
    podman.locks = locks
    yield podman
    podman.stop_all()


class _NoRunc:
    name = "runc"

    def knows(self, name: str) -> bool:
        return False


def test_podman_pod_save_freezes_through_runc_exports_each_and_removes_the_pod_once_stored(shop, private_host):
    result = save_pod(PodSaveRequest(pod="shop", dest="shop:v1", dump=DumpOptions(criu=CriuOptions())))
    assert sorted(result.members) == ["db", "web"]
    log = shop.log
    pauses = [i for i, line in enumerate(log) if line.startswith("runc pause")]
    first_export = next(i for i, line in enumerate(log) if line.startswith("podman checkpoint"))
    assert len(pauses) == 2 and max(pauses) < log.index(next(x for x in log if x.startswith("lock"))) < first_export
    assert log.index("podman pod rm") > max(i for i, line in enumerate(log) if line.startswith("podman checkpoint"))
    assert "shop" not in shop.pods
    checkpoints = [c for c in shop.calls if c[:2] == ["container", "checkpoint"]]
    assert all("--leave-running" in c for c in checkpoints)
    store = Home().store()
    pod = podfmt.open_pod(store, store.resolve("shop:v1"))
    assert pod.config.engine == "podman" and pod.config.sandbox is None
    assert pod.config.annotations == {"team": "shop"}
    assert pod.config.member("web").namespaces["network"] == podfmt.ENGINE_SANDBOX
    assert {layer.annotations.get("dev.ckpt.layer.role") for layer in pod.engine_layers(store)} == {"engine"}


def test_podman_pod_save_of_some_members_leaves_the_others_and_the_pod(shop, private_host):
    """--member: the saved member is removed once stored; the pod and its other member stay."""
    result = save_pod(PodSaveRequest(pod="shop", members=("shop-web",), dest="web:v1"))
    assert sorted(result.members) == ["web"]
    assert "shop-web" not in shop.containers and shop.containers["shop-db"].status == "running"
    assert "shop" in shop.pods and "podman pod rm" not in shop.log
    assert not shop.locks[-1].locked


def test_podman_pod_restore_makes_the_pod_again_and_restores_each_member_into_it(shop, private_host):
    save_pod(PodSaveRequest(pod="shop", dest="shop:v1"))
    shop.log.clear()
    result = restore_if_pod("shop:v1", ref_or_path("shop:v1"), PodRestoreRequest())
    assert result is not None and result.engine == "podman" and result.pod == "shop"
    create = shop.pods["shop"]["create"]
    assert _option(create, "--share") == "uts,ipc,net" and _option(create, "--infra-image") == "localhost/pause:v1"
    assert _option(create, "--infra-command") == "/bin/pause" and _option(create, "--network") == "none"
    assert _option(create, "--label") == "team=shop"
    log = shop.log
    assert log.index("podman pod start") < next(i for i, x in enumerate(log) if x.startswith("lock")) < \
        log.index("podman restore shop-web") < log.index("podman restore shop-db") < \
        next(i for i, x in enumerate(log) if x.startswith("unlock"))
    assert sorted(shop.pods["shop"]["members"]) == ["shop-db", "shop-web"]


def test_podman_pod_restore_under_a_new_name_and_its_refusals(shop, private_host):
    save_pod(PodSaveRequest(pod="shop", dest="shop:v1", dump=DumpOptions(criu=CriuOptions(leave_running=True))))
    result = restore_if_pod("shop:v1", ref_or_path("shop:v1"), PodRestoreRequest(name="shop2"))
    assert result is not None and sorted(m.container for m in result.members) == ["shop2-db", "shop2-web"]
    save_pod(PodSaveRequest(pod="shop", dest="tcp:v1", dump=DumpOptions(criu=CriuOptions(leave_running=True,
                                                                                          tcp_established=True))))
    with pytest.raises(UsageError, match="only under the containers' own names"):
        restore_if_pod("tcp:v1", ref_or_path("tcp:v1"), PodRestoreRequest(name="shop3"))
    with pytest.raises(UsageError, match="cannot restore a pod lazily"):
        restore_if_pod("shop:v1", ref_or_path("shop:v1"), PodRestoreRequest(name="shop4", lazy=True))
    assert not any(name.startswith("shop4") for name in shop.containers)


def test_a_member_podman_cannot_restore_takes_the_whole_new_pod_away(shop, private_host):
    save_pod(PodSaveRequest(pod="shop", dest="shop:v1"))
    shop.fail["container restore"] = "Error: criu failed"
    with pytest.raises(CriuFailed):
        restore_if_pod("shop:v1", ref_or_path("shop:v1"), PodRestoreRequest())
    assert "shop" not in shop.pods and not any(name.startswith("shop") for name in shop.containers)
    assert not shop.locks[-1].locked


def test_a_podman_pod_that_shares_its_pid_namespace_is_refused(shop, monkeypatch):
    original = shop._pod_json
    monkeypatch.setattr(shop, "_pod_json", lambda name: original(name).replace('"net"]', '"net", "pid"]'))
    with pytest.raises(UsageError, match="shares pid"):
        save_pod(PodSaveRequest(pod="shop"))
    assert all(ctr.status == "running" for ctr in shop.containers.values())
