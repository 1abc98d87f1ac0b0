"""Pods through the pod pipelines as any user: runc scripted (scripted_runtimes.py, plus `runc list`),
the network lock and the guard stood in for (they need root): the order of every step of a pod
save and restore, a failure at each point putting every member back (or removing everything the
restore made), the refusals, and the pod checkpoint in the store, an `oci:` layout and a registry."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from porcelain_helpers import leftovers, tags
from scripted_runtimes import Ctr, ScriptedRunc, sleeper

from checkpointer.criu import config as criu_config
from checkpointer.criu import netns
from checkpointer.criu.options import CriuOptions
from checkpointer.errors import (AlreadyExists, CriuFailed, Interrupted, NotFound, RuntimeFailed, StorageError,
                                 UsageError)
from checkpointer.format import pod as podfmt
from checkpointer.oci.layout import Layout
from checkpointer.porcelain import engines
from checkpointer.porcelain.engines.base import DumpOptions
from checkpointer.porcelain.home import Home
from checkpointer.porcelain.pod import engines as pod_engines
from checkpointer.porcelain.pod import freeze
from checkpointer.porcelain.pod import save as pod_save
from checkpointer.porcelain.pod.convert import convert_if_pod
from checkpointer.porcelain.pod.inspect import inspect_if_pod
from checkpointer.porcelain.pod.places import ref_or_path
from checkpointer.porcelain.pod.restore import PodRestoreRequest, restore_if_pod
from checkpointer.porcelain.pod.runc import RuncPods
from checkpointer.porcelain.pod.save import PodSaveRequest, save_pod
from checkpointer.runtime.runc import Runc

BASE_SPEC = {"ociVersion": "1.0.2", "process": {"args": ["/bin/sleepy"]}, "root": {"path": "rootfs"}}


class PodRunc(ScriptedRunc):
    """runc scripted, with `runc list`, and a log shared with the lock and the guard."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def __call__(self, cmd: list[str], **kwargs):  # noqa: ANN003, ANN204
        args = cmd[1:]
        if args[:1] == ["--root"]:
            args = args[2:]
        if args[0] == "list":
            self.calls.append(args)
            listed = [{"id": name, "pid": ctr.pid, "status": ctr.status, "bundle": str(ctr.bundle)}
                      for name, ctr in self.containers.items()]
            return self.answer(cmd, args, "list", kwargs, json.dumps(listed))
        if args[0] in ("pause", "resume", "checkpoint", "restore", "kill", "delete"):
            self.log.append(f"{args[0]} {args[-2] if args[0] == 'kill' else args[-1]}")
        return super().__call__(cmd, **kwargs)


class FakeLock:
    def __init__(self, pid: int, log: list[str]) -> None:
        self.netns, self.log, self.locked = f"/proc/{pid}/ns/net", log, False

    def lock(self) -> None:
        self.log.append(f"lock {self.netns}")
        self.locked = True

    def unlock(self, *, missing_ok: bool = False) -> None:
        if self.locked:
            self.log.append(f"unlock {self.netns}")
        self.locked = False


class FakeGuard:
    """The pod guard, in this process: fire() drops the lock and resumes through runc; keep() does not."""

    def __init__(self, script: PodRunc, *, runc: list[str], resume: list[str], lock: FakeLock | None,
                 marker: str | None = None) -> None:
        self.script, self.resume, self.lock, self.done = script, resume, lock, False

    def fire(self) -> None:
        if self.done:
            return
        self.done = True
        self.script.log.append("guard fires")
        if self.lock is not None:
            self.lock.unlock()
        for name in self.resume:
            ctr = self.script.containers.get(name)
            if ctr is not None and ctr.status == "paused":
                self.script.log.append(f"resume {name}")
                ctr.status = "running"

    def keep(self) -> None:
        self.done = True


def _bundle(root: Path, name: str, namespaces: list[dict], annotations: dict | None = None) -> Path:
    bundle = root / name
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    (bundle / "rootfs" / "bin" / "sleepy").write_text("#!/bin/sh\n")
    spec = {**BASE_SPEC, "linux": {"namespaces": namespaces}, "annotations": annotations or {}}
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A runc pod "web": the sandbox web-sandbox (its own network, ipc and uts) and two members,
    web-server and web-client, that join them by path; an unrelated container "other"."""
    log: list[str] = []
    script = PodRunc(log)
    bundles = tmp_path / "bundles"
    sandbox = Ctr("running", None, sleeper())
    own = [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]
    sandbox.bundle = _bundle(bundles, "web-sandbox", own, {"dev.ckpt.pod.name": "web"})
    script.containers["web-sandbox"] = sandbox
    joins = [{"type": "pid"}, {"type": "mount"}] + [{"type": kind, "path": f"/proc/{sandbox.pid}/ns/{file}"}
                                                   for kind, file in (("network", "net"), ("ipc", "ipc"),
                                                                      ("uts", "uts"))]
    for name in ("web-server", "web-client"):
        script.containers[name] = Ctr("running", _bundle(bundles, name, joins), sleeper())
    script.containers["other"] = Ctr("running", _bundle(bundles, "other", own), sleeper())
    locks: list[FakeLock] = []

    def lock_for(pid: int) -> FakeLock:
        locks.append(FakeLock(pid, log))
        return locks[-1]

    host = freeze.Host(lock_for=lock_for, guard=lambda **kw: FakeGuard(script, **kw))

    def make(ctx):  # noqa: ANN001, ANN202
        runtime = Runc(root=ctx.runc_root, runner=script, which=lambda binary: f"/usr/sbin/{binary}")
        return RuncPods(ctx, runc=runtime, host=host)

    monkeypatch.setitem(pod_engines._ENGINES, "runc", make)
    monkeypatch.setitem(pod_engines._ENGINES, "podman", lambda ctx: _NoPodman())
    monkeypatch.setitem(engines._ENGINES, "runc", lambda ctx: _runc_engine(ctx, script))
    # Reading a network namespace, the loopback script's tools and CRIU's lock need root or probes.
    monkeypatch.setattr(netns, "read", lambda pid, namespace: netns.NetworkState(
        namespace, netns.Loopback() if namespace == netns.PRIVATE else None, ("lo",)))
    monkeypatch.setattr(netns, "tools", lambda: ("/usr/bin/nsenter", "/usr/sbin/ip"))
    monkeypatch.setattr(criu_config, "network_lock", lambda **kw: None)
    script.locks = locks
    yield script
    script.stop_all()


class _NoPodman:
    name = "podman"

    def knows(self, name: str) -> bool:
        return False


def _runc_engine(ctx, script):  # noqa: ANN001, ANN202
    from checkpointer.porcelain.engines.runc import RuncEngine

    return RuncEngine(ctx, runc=Runc(root=ctx.runc_root, runner=script, which=lambda b: f"/usr/sbin/{b}"))


def _save(dest: str | None = "web:v1", **options: bool) -> pod_save.PodSaveResult:
    return save_pod(PodSaveRequest(pod="web", dest=dest, dump=DumpOptions(criu=CriuOptions(**options))))


def _first(log: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(log) if line.startswith(prefix))


def _last(log: list[str], prefix: str) -> int:
    return max(i for i, line in enumerate(log) if line.startswith(prefix))


def test_pod_save_freezes_all_locks_dumps_each_stores_one_pod_then_stops_them(pod, private_host):
    sandbox_pid = pod.containers["web-sandbox"].pid
    result = _save()
    assert result.pod == "web" and sorted(result.members) == ["client", "sandbox", "server"]
    log = pod.log
    # Every member frozen and the network locked before the first dump; stopped only after it all.
    assert _last(log, "pause") < _first(log, "lock") < _first(log, "checkpoint")
    assert [line for line in log if line.startswith("pause")] == ["pause web-sandbox", "pause web-server",
                                                                  "pause web-client"]
    assert log[_last(log, "checkpoint")] == "checkpoint web-sandbox"  # the sandbox is dumped last
    assert _last(log, "checkpoint") < _first(log, "kill")
    # unlocked while the sandbox still holds the namespace (members not saved run on in it)
    assert log[-3:] == [f"unlock /proc/{sandbox_pid}/ns/net", "kill web-sandbox", "delete web-sandbox"]
    assert "other" in pod.containers and all(name not in pod.containers for name in
                                             ("web-sandbox", "web-server", "web-client"))
    dumps = [call for call in pod.calls if call[0] == "checkpoint"]
    assert all("--leave-running" in call for call in dumps)
    assert tags(private_host) == ["web:v1"] and leftovers(private_host) == []
    store = Home().store()
    opened = podfmt.open_pod(store, store.resolve("web:v1"))
    config = opened.config
    assert config.sandbox == "sandbox" and config.restore_order[0] == "sandbox"
    assert config.network_lock == podfmt.LOCK_POD and config.pod == podfmt.PodIdentity("web", "web-sandbox")
    assert config.member("server").joins() == {"network": "sandbox", "ipc": "sandbox", "uts": "sandbox"}
    assert config.member("sandbox").namespaces["network"] == "own"
    assert config.member("client").namespaces["user"] == "host"
    # The members have the same CRIU images (the scripted dump writes one fixture): stored once.
    assert result.shared > 0


def test_save_with_leave_running_unlocks_and_resumes_them(pod):
    result = _save(leave_running=True)
    assert result.left_running
    assert all(pod.containers[name].status == "running" for name in ("web-sandbox", "web-server", "web-client"))
    assert "kill web-server" not in pod.log and "guard fires" in pod.log
    assert pod.log.index("guard fires") > _last(pod.log, "checkpoint")


def test_a_member_that_cannot_be_dumped_puts_every_member_back(pod, private_host):
    original = pod.__call__

    def refuse(cmd, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if "checkpoint" in cmd and cmd[-1] == "web-client":
            pod.log.append("checkpoint web-client refused")
            return pod.answer(cmd, cmd, "checkpoint", kwargs, "Error (criu/files.c): io_uring is unsupported", 1)
        return original(cmd, **kwargs)

    pod.__class__ = type("Refusing", (PodRunc,), {"__call__": lambda self, cmd, **kw: refuse(cmd, **kw)})
    with pytest.raises(CriuFailed):
        _save()
    assert all(pod.containers[name].status == "running" for name in ("web-sandbox", "web-server", "web-client"))
    assert not pod.locks[0].locked and "guard fires" in pod.log
    assert not any(line.startswith(("kill", "delete")) for line in pod.log)
    assert tags(private_host) == [] and leftovers(private_host) == []


@pytest.mark.parametrize("failure, expected", [(OSError(28, "No space left on device"), StorageError),
                                               (KeyboardInterrupt(), Interrupted)])
def test_a_failure_after_the_dumps_puts_every_member_back(pod, private_host, monkeypatch, failure, expected):
    def fail(*args, **kwargs):  # noqa: ANN002, ANN003
        raise failure

    monkeypatch.setattr(podfmt, "write_pod", fail)
    with pytest.raises(expected):
        _save()
    assert all(pod.containers[name].status == "running" for name in ("web-sandbox", "web-server", "web-client"))
    assert tags(private_host) == [] and leftovers(private_host) == []


def test_the_pod_is_named_by_its_sandbox_too_and_members_can_be_listed(pod):
    found = RuncPods(_ctx(), runc=_runtime(pod)).find("web-sandbox", ("web-server",))
    assert [m.name for m in found.members] == ["sandbox", "server"] and found.netns_pid == pod.containers[
        "web-sandbox"].pid
    with pytest.raises(NotFound, match="no running runc container 'web-ghost'"):
        RuncPods(_ctx(), runc=_runtime(pod)).find("web", ("web-ghost",))
    with pytest.raises(UsageError, match="joins none of the namespaces"):
        RuncPods(_ctx(), runc=_runtime(pod)).find("web", ("other",))
    with pytest.raises(NotFound, match="no pod 'nothing'"):
        save_pod(PodSaveRequest(pod="nothing"))
    for name in ("web-server", "web-client"):
        pod.containers[name].status = "stopped"
    with pytest.raises(UsageError, match="no runc container joins"):
        RuncPods(_ctx(), runc=_runtime(pod)).find("web")


def test_a_member_sharing_the_sandbox_pid_namespace_is_refused(pod, tmp_path):
    sandbox = pod.containers["web-sandbox"]
    shares_pid = [{"type": "pid", "path": f"/proc/{sandbox.pid}/ns/pid"}, {"type": "mount"},
                  {"type": "network", "path": f"/proc/{sandbox.pid}/ns/net"}]
    pod.containers["web-debug"] = Ctr("running", _bundle(tmp_path / "more", "web-debug", shares_pid), sleeper())
    with pytest.raises(UsageError, match="shares the pid namespace"):
        _save()
    assert all(ctr.status == "running" for ctr in pod.containers.values())


def _ctx():  # noqa: ANN202
    from checkpointer.porcelain.engines.base import Context

    return Context(Home())


def _runtime(script) -> Runc:  # noqa: ANN001
    return Runc(runner=script, which=lambda binary: f"/usr/sbin/{binary}")


def _wipe(pod) -> None:  # noqa: ANN001
    for name in [n for n in pod.containers if n.startswith("web-")]:
        pod.containers.pop(name).end()
    pod.log.clear()


def test_pod_restore_brings_the_sandbox_back_first_then_each_member_into_its_namespaces(pod, private_host):
    _save()
    _wipe(pod)
    result = restore_if_pod("web:v1", ref_or_path("web:v1"), PodRestoreRequest(name="shop"))
    assert result is not None and result.pod == "shop" and result.engine == "runc"
    assert [m.container for m in result.members] == ["shop-sandbox", "shop-server", "shop-client"]
    log = pod.log
    sandbox_pid = pod.containers["shop-sandbox"].pid
    assert log[0] == "restore shop-sandbox" and log[1] == f"lock /proc/{sandbox_pid}/ns/net"
    assert log[-1] == f"unlock /proc/{sandbox_pid}/ns/net" and log[-3:-1] == ["restore shop-server",
                                                                               "restore shop-client"]
    home = Home()
    server = json.loads((home.bundle_path("shop-server") / "config.json").read_text())
    paths = {ns["type"]: ns.get("path") for ns in server["linux"]["namespaces"]}
    assert paths == {"pid": None, "mount": None, "network": f"/proc/{sandbox_pid}/ns/net",
                     "ipc": f"/proc/{sandbox_pid}/ns/ipc", "uts": f"/proc/{sandbox_pid}/ns/uts"}
    sandbox = json.loads((home.bundle_path("shop-sandbox") / "config.json").read_text())
    assert sandbox["annotations"]["dev.ckpt.pod.name"] == "shop"
    # The restored pod is a pod again, under its new name.
    assert [m.name for m in RuncPods(_ctx(), runc=_runtime(pod)).find("shop").members] == ["sandbox", "server",
                                                                                          "client"]


def test_pod_restore_refuses_names_taken_before_it_makes_anything(pod, private_host):
    _save(leave_running=True)
    pod.log.clear()
    with pytest.raises(AlreadyExists, match="web-sandbox, web-server, web-client"):
        restore_if_pod("web:v1", ref_or_path("web:v1"), PodRestoreRequest())
    assert pod.log == []


def test_a_member_that_cannot_be_stopped_after_the_store_still_lets_the_rest_stop_and_unlock(pod, private_host):
    """Once the pod checkpoint is stored every member is stopped: one whose delete fails is
    reported (it stays paused, the hint says how to remove it), the others are stopped all the
    same and the lock goes."""
    original = PodRunc.__call__

    def refuse(self, cmd, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if "delete" in cmd and cmd[-1] == "web-server":
            return self.answer(cmd, cmd, "delete", kwargs, "cannot delete: device busy", 1)
        return original(self, cmd, **kwargs)

    pod.__class__ = type("Refusing", (PodRunc,), {"__call__": refuse})
    with pytest.raises(RuntimeFailed, match="stored, but not every member could be stopped: server") as err:
        _save()
    assert "runc delete --force" in (err.value.hint or "")
    assert tags(private_host) == ["web:v1"]  # stored; nothing was put back
    assert "web-client" not in pod.containers and "web-sandbox" not in pod.containers
    assert not pod.locks[-1].locked and "guard fires" not in pod.log


def test_a_member_left_out_runs_on_unlocked_in_the_sandbox(pod, private_host):
    """--member: the sandbox and the server are saved and stopped; the client, not saved, runs on
    in the sandbox's namespaces, and the lock is dropped while they still exist."""
    save_pod(PodSaveRequest(pod="web", members=("web-server",), dest="web:v1"))
    assert pod.containers["web-client"].status == "running"
    unlock = next(i for i, line in enumerate(pod.log) if line.startswith("unlock"))
    assert unlock < pod.log.index("kill web-sandbox")
    assert not pod.locks[-1].locked


def test_a_failed_member_restore_removes_everything_the_restore_made(pod, private_host):
    _save()
    _wipe(pod)
    original = PodRunc.__call__

    def refuse(self, cmd, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if "restore" in cmd and cmd[-1] == "web-client":
            return self.answer(cmd, cmd, "restore", kwargs, "criu failed: type RESTORE errno 0", 1)
        return original(self, cmd, **kwargs)

    pod.__class__ = type("Refusing", (PodRunc,), {"__call__": refuse})
    with pytest.raises(CriuFailed):
        restore_if_pod("web:v1", ref_or_path("web:v1"), PodRestoreRequest())
    assert not [name for name in pod.containers if name.startswith("web-")]
    assert not any((Home().root / "containers").glob("web-*")) and not pod.locks[-1].locked
    assert leftovers(private_host) == []


def test_if_running_is_refused_for_a_pod(pod):
    _save()
    with pytest.raises(UsageError, match="--if-running-ok"):
        restore_if_pod("web:v1", ref_or_path("web:v1"), PodRestoreRequest(if_running=True))


def test_inspect_shows_the_members_and_what_they_share(pod):
    _save()
    view = inspect_if_pod("web:v1", ref_or_path("web:v1"))
    assert view is not None and [m.name for m in view.members] == ["sandbox", "server", "client"]
    server = view.members[1]
    assert sorted(server.owns()) == ["mount", "pid"] and server.joins() == {"network": "sandbox", "ipc": "sandbox",
                                                                     "uts": "sandbox"}
    assert all(m.view.processes for m in view.members) and view.shared > 0 and view.memory > 0
    shown = view.to_json()
    assert shown["kind"] == "pod" and shown["pod"]["sandbox"] == "sandbox" and len(shown["members"]) == 3
    assert inspect_if_pod("nothing:v1", ref_or_path("nothing:v1")) is None


def test_a_pod_goes_to_an_oci_layout_and_a_registry_and_comes_back(pod, private_host, registry, tmp_path):
    from checkpointer.porcelain.places import RegistryOptions

    _save()
    layout = tmp_path / "layout"
    copied = convert_if_pod("web:v1", f"oci:{layout}:pod")
    assert copied is not None and copied.origin == "ckpt"
    assert Layout(layout).resolve("pod").digest == Home().store().resolve("web:v1").digest
    ref = f"{registry.host}/team/web:v1"
    insecure = RegistryOptions(insecure=True)
    assert convert_if_pod(f"oci:{layout}:pod", ref, registry=insecure) is not None
    index = json.loads(registry.manifests[("team/web", "v1")][0])
    assert index["artifactType"] == podfmt.POD_ARTIFACT and len(index["manifests"]) == 4
    _wipe(pod)
    Home().store().untag("web:v1")
    Home().store().gc()
    view = inspect_if_pod(ref, ref_or_path(ref), registry=insecure)
    assert view is not None and len(view.members) == 3
    result = restore_if_pod(ref, ref_or_path(ref), PodRestoreRequest(), registry=insecure)
    assert result is not None and sorted(pod.containers) == ["other", "web-client", "web-sandbox", "web-server"]


def test_ls_inspect_and_convert_on_the_command_line(pod, ckpt, tmp_path):
    _save()
    listed = ckpt("ls", "--json")
    assert listed.code == 0 and listed.json()[0]["container"] == "pod web (sandbox, server, client)"
    shown = ckpt("inspect", "web:v1")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("pod web  (runc, 3 members") and "network lock: pod" in lines[0]
    assert any(line.startswith("├─ sandbox") and "owns" in line for line in lines)
    assert any(line.startswith("└─ client") and "joins" in line and "of sandbox" in line for line in lines)
    assert lines[-1].startswith("stored: ") and "shared between members" in lines[-1]
    assert ckpt("inspect", "web:v1", "--json").json()["kind"] == "pod"
    converted = ckpt("convert", "web:v1", f"oci:{tmp_path / 'out'}:pod", "--json")
    assert converted.code == 0 and converted.json()["kind"] == "pod"
    refused = ckpt("convert", "web:v1", str(tmp_path / "crio"), "--compat", "cri-o-pod")
    assert refused.code == 2 and "cannot become CRI-O's pod checkpoint" in refused.err


def test_the_tmp_criu_touches_keeps_its_times(tmp_path):
    """CRIU makes and removes a directory in the container's /tmp while it dumps; the rootfs layer
    (and so its digest, shared by the members of one image) must not see it."""
    import os
    import time

    from checkpointer.runtime.runc import criu_leaves_tmp_as_it_was

    rootfs = tmp_path / "rootfs"
    (rootfs / "tmp").mkdir(parents=True)
    os.utime(rootfs / "tmp", ns=(1_000_000_000, 2_000_000_000))
    with criu_leaves_tmp_as_it_was(rootfs):
        (rootfs / "tmp" / ".criu.mntns.x").mkdir()
        (rootfs / "tmp" / ".criu.mntns.x").rmdir()
        assert os.stat(rootfs / "tmp").st_mtime_ns > 2_000_000_000
    assert os.stat(rootfs / "tmp").st_mtime_ns == 2_000_000_000
    with criu_leaves_tmp_as_it_was(tmp_path / "no-rootfs"):
        time.sleep(0)


def test_push_and_pull_copy_a_pod_whole(pod, ckpt, registry, private_host):
    _save()
    ref = f"{registry.host}/team/web:v1"
    pushed = ckpt("push", "web:v1", ref, "--insecure", "--json")
    assert pushed.code == 0, pushed.err
    index = json.loads(registry.manifests[("team/web", "v1")][0])
    assert index["artifactType"] == podfmt.POD_ARTIFACT
    pulled = ckpt("pull", ref, "copy:v2", "--insecure", "--json")
    assert pulled.code == 0 and pulled.json()["digest"] == pushed.json()["digest"]
    assert "copy:v2" in tags(private_host)
