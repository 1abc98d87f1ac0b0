"""The real engines (runc, Podman, process) behind the pipelines, with their runtimes scripted
(scripted_runtimes.py) and CRIU's RPC stood in for: the order of their calls, the put-back each does after a
failure that follows the dump, the rescue when even that fails, and what their restores build."""
from __future__ import annotations

import json
import stat
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from porcelain_helpers import leftovers, tags
from criu_fixture import write_images
from scripted_runtimes import Ctr, ScriptedPodman, ScriptedRunc, sleeper

from checkpointer.criu import rpc
from checkpointer.errors import CkptError, NotFound, RuntimeFailed
from checkpointer.porcelain import engines
from checkpointer.porcelain import save as save_mod
from checkpointer.porcelain.engines import process as process_engine
from checkpointer.porcelain.engines.podman import PodmanEngine
from checkpointer.porcelain.engines.runc import RuncEngine
from checkpointer.runtime.podman import Podman
from checkpointer.runtime.runc import Runc

SPEC = {"ociVersion": "1.0.2", "process": {"args": ["/bin/sleepy"]}, "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}


class Guard:
    """The resume guard, in this process: fire() resumes the container through runc, keep() does not."""

    def __init__(self, runc: Runc, container: str, log: list[str]) -> None:
        self.runc, self.container, self.log = runc, container, log

    def fire(self) -> None:
        self.log.append("fire")
        if self.runc.state(self.container).status == "paused":
            self.runc.resume(self.container)

    def keep(self) -> None:
        self.log.append("keep")


@pytest.fixture
def runc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A scripted runc with a running container "web" (its bundle has a rootfs and a spec), as the
    runc engine's runtime; `runc.guards` records what the resume guard was told."""
    script = ScriptedRunc()
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    (bundle / "rootfs" / "bin" / "sleepy").write_text("#!/bin/sh\n")
    (bundle / "config.json").write_text(json.dumps(SPEC))
    script.containers["web"] = Ctr("running", bundle, sleeper())
    script.guards = []

    def make(ctx):  # noqa: ANN001, ANN202
        runtime = Runc(root=ctx.runc_root, runner=script, which=lambda binary: f"/usr/sbin/{binary}")
        runtime.resume_guard = lambda container, marker: Guard(runtime, container, script.guards)
        return RuncEngine(ctx, runc=runtime)

    monkeypatch.setitem(engines._ENGINES, "runc", make)
    yield script
    script.stop_all()


def verbs(script) -> list[str]:  # noqa: ANN001
    return [call[0] for call in script.calls]


def test_runc_save_pauses_dumps_leaving_it_frozen_and_stops_it_once_stored(runc, ckpt, private_host):
    res = ckpt("save", "--engine", "runc", "web", "web:v1", "--json")
    assert res.code == 0, res.err
    assert verbs(runc)[:4] == ["state", "--version", "pause", "checkpoint"] or \
        verbs(runc)[:4] == ["state", "pause", "--version", "checkpoint"] or "pause" in verbs(runc)
    dump = next(c for c in runc.calls if c[0] == "checkpoint")
    assert "--leave-running" in dump, "the dump must leave the container frozen until the checkpoint is stored"
    assert verbs(runc)[-2:] == ["kill", "delete"] and runc.guards == ["keep"]
    assert "web" not in runc.containers
    assert tags(private_host) == ["web:v1"]
    shown = ckpt("inspect", "web:v1", "--json").json()
    assert shown["config"]["runtime"] == {"name": "runc", "version": "1.1.5"}
    assert {layer["role"] for layer in shown["layers"]} == {"criu", "pages", "rootfs", "spec"}


def test_runc_leave_running_resumes_it(runc, ckpt):
    assert ckpt("save", "--leave-running", "web", "web:v1").code == 0
    assert runc.containers["web"].status == "running" and runc.guards == ["fire"]


def test_runc_failure_after_the_dump_resumes_the_frozen_container(runc, ckpt, monkeypatch, private_host):
    def full(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save_mod, "write_checkpoint", full)
    res = ckpt("save", "web", "web:v1")
    assert res.code == 13 and "No space left on device" in res.err
    assert runc.containers["web"].status == "running" and runc.guards == ["fire"]
    assert tags(private_host) == [] and leftovers(private_host) == []


def test_runc_tcp_established_is_restored_in_place_after_a_failure(runc, ckpt, monkeypatch, private_host):
    """With --tcp-established CRIU's dump stops the container (its connections stay locked); a
    failure afterwards restores it from the images just taken, into its own bundle."""
    bundle = runc.containers["web"].bundle
    monkeypatch.setattr(save_mod, "write_checkpoint", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    res = ckpt("save", "--tcp-established", "web", "web:v1")
    assert res.code == 130 and "put back" in res.err
    assert "pause" not in verbs(runc) and "restore" in verbs(runc)
    restore = next(call for call in runc.calls if call[0] == "restore")
    assert "--tcp-established" in restore and restore[restore.index("--bundle") + 1] == str(bundle)
    assert runc.containers["web"].status == "running" and leftovers(private_host) == []


def test_runc_images_are_rescued_when_putting_back_fails_too(runc, ckpt, monkeypatch, private_host):
    monkeypatch.setattr(save_mod, "write_checkpoint", lambda *a, **kw: (_ for _ in ()).throw(OSError(5, "I/O")))
    runc.fail["restore"] = "criu failed: type RESTORE errno 0"
    res = ckpt("save", "--tcp-established", "web", "web:v1")
    assert res.code == 1 and "putting the container back failed too" in res.err
    rescued = list((private_host / "home" / "rescue").iterdir())
    assert len(rescued) == 1 and (rescued[0] / "pstree.img").is_file()
    assert str(rescued[0]) in res.err


def test_runc_refuses_a_stopped_container(runc, ckpt):
    runc.containers["web"].status = "stopped"
    res = ckpt("save", "web")
    assert res.code == 2 and "is stopped, not running" in res.err


def test_runc_restore_builds_the_bundle_and_removes_it_on_failure(runc, ckpt, private_host):
    assert ckpt("save", "web", "web:v1").code == 0
    runc.fail["restore"] = "criu failed"
    failed = ckpt("restore", "web:v1", "--name", "copy")
    assert failed.code in (5, 6) and "copy" not in runc.containers
    assert not (private_host / "home" / "containers" / "copy").exists()
    del runc.fail["restore"]
    res = ckpt("restore", "web:v1", "--name", "copy", "--json")
    assert res.code == 0, res.err
    bundle = Path(res.json()["bundle"])
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["root"]["path"] == "rootfs" and spec["process"] == SPEC["process"]
    assert stat.S_IMODE((bundle / "config.json").stat().st_mode) == 0o644
    assert (bundle / "rootfs" / "bin" / "sleepy").read_text() == "#!/bin/sh\n"
    assert runc.containers["copy"].bundle == bundle
    again = ckpt("restore", "web:v1", "--name", "copy", "--if-running-ok", "--json")
    assert again.code == 0 and again.json()["already_running"] is True


def test_runc_restore_starts_again_after_a_killed_restore_of_its_own(runc, ckpt, private_host):
    """A container left by a restore that was killed (created, not running, in ckpt's own bundle)
    is removed and restored again; anyone else's is in the way."""
    assert ckpt("save", "web", "web:v1").code == 0
    ours = private_host / "home" / "containers" / "web"
    (ours / "rootfs").mkdir(parents=True)
    runc.containers["web"] = Ctr("created", ours, None)
    assert ckpt("restore", "web:v1").code == 0
    assert runc.containers["web"].status == "running"
    runc.containers["other"] = Ctr("created", private_host / "elsewhere", None)
    taken = ckpt("restore", "web:v1", "--name", "other")
    assert taken.code == 4 and "exists already" in taken.err


@pytest.fixture
def podman(monkeypatch: pytest.MonkeyPatch):
    script = ScriptedPodman()
    script.containers["web"] = Ctr("running", None, sleeper())

    def make(ctx):  # noqa: ANN001, ANN202
        return PodmanEngine(ctx, podman=Podman(runner=script, which=lambda binary: f"/usr/bin/{binary}"))

    monkeypatch.setitem(engines._ENGINES, "podman", make)
    yield script
    script.stop_all()


def test_podman_save_to_a_registry_packs_in_memory_and_uploads_as_it_packs(podman, ckpt, registry, private_host,
                                                                           monkeypatch):
    packed_in, early = [], []
    real = save_mod.write_checkpoint

    def write(layout, **kw):  # noqa: ANN001, ANN003, ANN202
        packed_in.append(layout.root)
        early.append(kw["on_blob"])
        return real(layout, **kw)

    monkeypatch.setattr(save_mod, "write_checkpoint", write)
    ref = f"{registry.host}/team/web:v1"
    res = ckpt("save", "--engine", "podman", "web", ref, "--insecure", "--json")
    assert res.code == 0, res.err
    assert packed_in[0].is_relative_to(private_host / "shm"), "a Podman save bound for a registry packs in memory"
    assert early[0] is not None, "a Podman save bound for a registry uploads each blob as it is packed"
    puts = [r.path for r in registry.requests if r.method == "PUT"]
    assert puts[-1] == "/v2/team/web/manifests/v1" and len(puts) > 3
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    roles = [layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]]
    assert roles[0] == "criu" and roles[-2:] == ["spec", "engine"] and "pages" in roles
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == podman.image_digest
    assert podman.containers["web"].status == "exited"
    assert leftovers(private_host) == []

    podman.containers.pop("web").end()
    res = ckpt("restore", ref, "--insecure", "--json")
    assert res.code == 0, res.err
    assert res.json()["engine"] == "podman" and podman.containers["web"].status == "running"
    assert podman.imported and leftovers(private_host) == []


def test_podman_failure_after_the_dump_restores_it_in_place(podman, ckpt, monkeypatch, private_host):
    monkeypatch.setattr(save_mod, "write_checkpoint", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    res = ckpt("save", "--engine", "podman", "web", "web:v1")
    assert res.code == 130
    assert podman.calls[-1][:2] == ["container", "restore"] and "--import" not in podman.calls[-1]
    assert podman.containers["web"].status == "running" and leftovers(private_host) == []


def test_podman_export_is_rescued_when_putting_back_fails(podman, ckpt, monkeypatch, private_host):
    monkeypatch.setattr(save_mod, "write_checkpoint", lambda *a, **kw: (_ for _ in ()).throw(OSError(5, "I/O")))
    podman.fail["container restore"] = "Error: restore failed"
    res = ckpt("save", "--engine", "podman", "web", "web:v1")
    assert res.code == 1 and "podman container restore --import" in res.err
    [rescued] = (private_host / "home" / "rescue").iterdir()
    with tarfile.open(rescued) as tar:
        assert "checkpoint/pstree.img" in tar.getnames() and "config.dump" in tar.getnames()


def test_podman_restore_removes_what_it_made_on_failure(podman, ckpt):
    assert ckpt("save", "--engine", "podman", "--leave-running", "web", "web:v1").code == 0
    taken = ckpt("restore", "web:v1")
    assert taken.code == 4 and "exists already" in taken.err
    podman.fail["container restore"] = "Error: no"
    res = ckpt("restore", "web:v1", "--name", "copy")
    assert res.code in (5, 6) and "copy" not in podman.containers


@pytest.fixture
def trees(monkeypatch: pytest.MonkeyPatch):
    """A real process tree to save (sleep), with CRIU's RPC stood in for."""
    proc = sleeper()
    done = SimpleNamespace(dumps=[], restores=[], fail_restore=False)

    def dump(pid, images, work, options, *, network_lock=None):  # noqa: ANN001, ANN202
        done.dumps.append(pid)
        write_images(images)
        if not options.leave_running:
            done.proc.kill()
            done.proc.wait()

    def restore(images, work, options, *, network_lock=None):  # noqa: ANN001, ANN202
        assert (images / "pstree.img").is_file()
        if done.fail_restore:
            raise RuntimeFailed("criu restore failed")
        done.restores.append(images)
        return SimpleNamespace(pid=99999)

    monkeypatch.setattr(rpc, "dump", dump)
    monkeypatch.setattr(rpc, "restore", restore)
    done.proc = proc
    yield done
    done.proc.kill()
    done.proc.wait()


def test_process_save_and_restore(trees, ckpt, private_host):
    res = ckpt("save", "--pid", str(trees.proc.pid), "job:v1", "--json")
    assert res.code == 0, res.err
    assert res.json()["container"] == "sleep" and trees.dumps == [trees.proc.pid]
    shown = ckpt("inspect", "job:v1", "--json").json()
    assert shown["config"]["engine"] == "process" and {layer["role"] for layer in shown["layers"]} == {"criu", "pages"}
    res = ckpt("restore", "job:v1", "--json")
    assert res.code == 0 and res.json() == {"container": "sleep", "pid": 99999, "bundle": None,
                                            "digest": res.json()["digest"], "already_running": False,
                                            "engine": "process", "warnings": []}


def test_process_put_back_and_refusals(trees, ckpt, monkeypatch, private_host):
    monkeypatch.setattr(save_mod, "write_checkpoint", lambda *a, **kw: (_ for _ in ()).throw(OSError(5, "I/O")))
    assert ckpt("save", "--pid", str(trees.proc.pid), "job:v1").code == 13
    assert len(trees.restores) == 1, "the processes were not put back"
    trees.proc = sleeper()  # (the stand-in for CRIU does not really bring the first one back)
    trees.fail_restore = True
    res = ckpt("save", "--pid", str(trees.proc.pid), "job:v1")
    assert res.code == 1 and "putting the processes back failed too" in res.err
    assert ckpt("save", "--pid", "999999999").code == NotFound.exit_code


def test_process_restore_refuses_a_pid_in_use(trees, ckpt, monkeypatch):
    monkeypatch.setattr(process_engine, "comm_of", lambda pid: "sleep")
    res = ckpt("save", "--pid", str(trees.proc.pid), "--leave-running", "job:v1")
    assert res.code == 0, res.err
    taken = ckpt("restore", "job:v1")
    assert taken.code == 4 and "in use here" in taken.err
    ok = ckpt("restore", "job:v1", "--if-running-ok", "--json")
    assert ok.code == 0 and ok.json()["already_running"] is True


def test_engines_are_named_once():
    assert engines.NAMES == ("runc", "podman", "process")
    with pytest.raises(CkptError, match="unknown engine"):
        engines.check_name("docker")
