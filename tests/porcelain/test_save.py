"""The save pipeline with the FakeEngine: where a checkpoint goes, the ordering promise (the container
is stopped only after every destination has it), and what a failure or Ctrl-C at each step leaves:
the container back as it was, nothing tagged, no work directory."""
from __future__ import annotations

import json

import pytest
from porcelain_helpers import leftovers, tags
from fake_engine import Injected

from checkpointer.errors import Interrupted, UsageError
from checkpointer.oci.layout import Layout
from checkpointer.porcelain import save as save_mod

SAVE_STEPS = ["find", "probe", "freeze", "dump", "commit"]


def test_save_to_the_store_tags_latest_and_a_timestamp_and_stops_the_container(world, ckpt, private_host):
    res = ckpt("save", "web", "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["container"] == "web" and out["left_running"] is False
    assert [r.split(":")[0] for r in out["references"]] == ["web", "web"]
    assert sorted(tags(private_host)) == sorted(out["references"])
    assert world.states["web"] == "stopped"
    assert world.steps == SAVE_STEPS
    assert leftovers(private_host) == []


def test_leave_running_resumes_it_after_the_checkpoint_is_stored(world, ckpt, private_host):
    assert ckpt("save", "--leave-running", "web", "snap:v1").code == 0
    assert world.states["web"] == "running" and "put back" not in world.steps
    assert tags(private_host) == ["snap:v1"]


def test_a_registry_destination_gets_every_blob_while_it_is_packed_in_memory(world, ckpt, registry, private_host,
                                                                             monkeypatch):
    """Packing happens beside the images in the (stand-in) tmpfs, not in the store, and every blob is
    uploaded before the manifest: the tag comes last."""
    packed_in = []
    real_write = save_mod.write_checkpoint
    monkeypatch.setattr(save_mod, "write_checkpoint",
                        lambda layout, **kw: packed_in.append(layout.root) or real_write(layout, **kw))
    ref = f"{registry.host}/team/web:v1"
    res = ckpt("save", "web", ref, "--insecure", "--json")
    assert res.code == 0, res.err
    assert packed_in and packed_in[0].is_relative_to(private_host / "shm")
    assert tags(private_host) == []  # the store holds nothing of a checkpoint that left the host
    puts = [r.path for r in registry.requests if r.method == "PUT"]
    assert puts[-1] == "/v2/team/web/manifests/v1" and all("/blobs/uploads/" in p for p in puts[:-1])
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    assert {layer["digest"] for layer in manifest["layers"]} <= set(registry.blobs)
    assert manifest["artifactType"] == "application/vnd.ckpt.checkpoint.v1"
    assert world.states["web"] == "stopped"
    assert leftovers(private_host) == []


def test_an_oci_layout_destination(world, ckpt, private_host):
    res = ckpt("save", "web", f"oci:{private_host / 'out'}:v2", "--json")
    assert res.code == 0, res.err
    layout = Layout(private_host / "out")
    assert layout.resolve("v2").digest == res.json()["digest"]


@pytest.mark.parametrize("step", ["find", "probe"])
def test_a_failure_before_the_dump_touches_nothing(world, ckpt, private_host, step):
    world.fail_at = step
    res = ckpt("save", "web")
    assert res.code == Injected.exit_code and f"injected failure at {step}" in res.err
    assert world.states["web"] == "running" and "freeze" not in world.steps
    assert tags(private_host) == [] and leftovers(private_host) == []


@pytest.mark.parametrize("step", ["freeze", "dump"])
def test_a_failure_in_the_dump_puts_the_container_back(world, ckpt, private_host, step):
    world.fail_at = step
    res = ckpt("save", "web")
    assert res.code == Injected.exit_code
    assert world.states["web"] == "running" and world.steps[-1] == "put back"
    assert tags(private_host) == [] and leftovers(private_host) == []


def _fail_in(monkeypatch, module, name, exc):  # noqa: ANN001
    def boom(*args, **kwargs):  # noqa: ANN002, ANN003
        raise exc

    monkeypatch.setattr(module, name, boom)


@pytest.mark.parametrize("exc, code", [(Injected("disk on fire"), Injected.exit_code),
                                       (KeyboardInterrupt(), Interrupted.exit_code)])
@pytest.mark.parametrize("where", ["repair_images", "write_checkpoint", "push"])
def test_after_the_dump_the_container_is_put_back_and_nothing_tagged(world, ckpt, private_host, registry,
                                                                     monkeypatch, where, exc, code):
    import checkpointer.registry

    _fail_in(monkeypatch, checkpointer.registry if where == "push" else save_mod, where, exc)
    res = ckpt("save", "web", f"{registry.host}/team/web:v1", "--insecure")
    assert res.code == code, res.err
    if isinstance(exc, KeyboardInterrupt):
        assert "save interrupted; the container was put back and nothing was tagged" in res.err
    assert world.states["web"] == "running" and world.steps[-1] == "put back"
    assert "commit" not in world.steps
    assert ("team/web", "v1") not in registry.manifests and tags(private_host) == []
    assert leftovers(private_host) == []


def test_a_registry_that_refuses_the_manifest_leaves_the_container_running(world, ckpt, private_host, registry):
    registry.script("PUT", r"/manifests/", 400, count=100,
                    body=b'{"errors":[{"code":"MANIFEST_INVALID","message":"no"}]}')
    res = ckpt("save", "web", f"{registry.host}/team/web:v1", "--insecure")
    assert res.code == 9 and "MANIFEST_INVALID" in res.err
    assert world.states["web"] == "running" and ("team/web", "v1") not in registry.manifests


@pytest.mark.parametrize("step", ["find", "probe", "freeze", "dump"])
def test_ctrl_c_at_each_engine_step_exits_130_and_leaves_nothing(world, ckpt, private_host, step):
    world.interrupt_at = step
    res = ckpt("save", "web", "snap:v1")
    assert res.code == 130
    assert "interrupted" in res.err
    assert world.states["web"] == "running"
    assert tags(private_host) == [] and leftovers(private_host) == []


def test_ctrl_c_after_the_checkpoint_is_stored_keeps_it(world, ckpt, private_host):
    """At commit the checkpoint is at its destination: it stays, and the container is not restored
    from it a second time."""
    world.interrupt_at = "commit"
    res = ckpt("save", "web", "snap:v1")
    assert res.code == 130
    assert tags(private_host) == ["snap:v1"] and "put back" not in world.steps


def test_an_unreachable_registry_fails_before_anything_is_frozen(world, ckpt, private_host, registry):
    registry.script("GET", r"^/v2/$", 401, count=100, headers={"WWW-Authenticate": 'Basic realm="x"'})
    res = ckpt("save", "web", f"{registry.host}/team/web:v1", "--insecure")
    assert res.code == 10, res.err
    assert "freeze" not in world.steps and world.states["web"] == "running"


@pytest.mark.parametrize("args, message", [
    (["save", "web", "x:v1", "--compat", "podman", "--encrypt-to", "k.pem"], "cannot be combined"),
    (["save", "web", "x:v1", "--compat", "nonsense"], "nonsense"),
    (["save", "--engine", "lxc", "web"], "unknown engine 'lxc'"),
    (["save", "--engine", "process", "web"], "--engine process needs --pid"),
    (["save"], "name a container to checkpoint"),
    (["save", "web", "web@sha256:" + "0" * 64], "names a tag, not a digest"),
])
def test_refusals_come_before_anything_is_frozen(world, ckpt, private_host, args, message, monkeypatch):
    monkeypatch.setattr("checkpointer.cli.save.public_keys", lambda paths: ["a key"] if paths else [])
    res = ckpt(*args)
    assert res.code == UsageError.exit_code, res.err
    assert message in res.err
    assert "freeze" not in world.steps


def test_an_unknown_container_is_not_found_in_either_engine(world, ckpt):
    res = ckpt("save", "nosuch")
    assert res.code == 3 and "no runc container 'nosuch', and no Podman container of that name" in res.err


def test_the_engine_that_has_the_container_saves_it(world, podman_world, ckpt, private_host):
    """runc is asked first, then Podman; the checkpoint records the engine that made it."""
    res = ckpt("save", "db", "db:v1", "--json")
    assert res.code == 0, res.err
    assert podman_world.states["db"] == "stopped" and world.steps == []
    res = ckpt("inspect", "db:v1", "--json")
    assert res.json()["config"]["engine"] == "podman"
    assert ckpt("save", "--engine", "podman", "web").code == 3  # the runc container is not Podman's
