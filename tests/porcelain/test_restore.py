"""The restore pipeline with the FakeEngine: from the store, from a registry (unpacked while it
downloads), the refusals that come before any memory moves (another engine's checkpoint, a host
that cannot take it, an encrypted one without its key), the name already taken, and what a failure
or Ctrl-C at each step leaves: nothing."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from porcelain_helpers import FakePodman, leftovers
from fake_engine import FakeEngine, Injected, World
from criu_fixture import ARGS

from checkpointer.errors import AlreadyExists, CorruptData, IncompatibleHost, UsageError
from checkpointer.host import HostInfo
from checkpointer.porcelain import engines, inspect
from checkpointer.porcelain.engines import base as engines_base


@pytest.fixture
def saved(world, ckpt) -> str:
    """web, saved into the store as snap:v1 (and stopped)."""
    assert ckpt("save", "web", "snap:v1").code == 0
    return "snap:v1"


def _pushed(world, ckpt, registry) -> str:  # noqa: ANN001
    ref = f"{registry.host}/team/web:v1"
    res = ckpt("save", "web", ref, "--insecure")
    assert res.code == 0, res.err
    return ref


def _new_host(monkeypatch, private_host: Path) -> Path:  # noqa: ANN001
    """Another, empty $CKPT_HOME: nothing of the save is at hand."""
    target = private_host / "target-home"
    monkeypatch.setenv("CKPT_HOME", str(target))
    return target


def _blob_gets(registry) -> set[str]:  # noqa: ANN001
    return {r.path.rsplit("/", 1)[-1] for r in registry.requests if r.method == "GET" and "/blobs/" in r.path}


def test_restore_from_the_store(world, ckpt, saved, private_host):
    res = ckpt("restore", saved, "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["container"] == "web" and out["engine"] == "runc" and out["already_running"] is False
    assert Path(out["bundle"], "rootfs", "bin", "sleepy").read_bytes().startswith(b"#!/bin/sh")
    restored = world.restored["web"]
    assert restored["pages"].startswith(ARGS), "the memory came back other than it was saved"
    assert {"pstree.img", "core-1.img", "mm-1.img", "pagemap-1.img", "pages-1.img"} <= set(restored["images"])
    assert world.states["web"] == "running" and leftovers(private_host) == []


def test_restore_from_a_registry_unpacks_while_it_downloads(world, ckpt, registry, private_host, monkeypatch):
    ref = _pushed(world, ckpt, registry)
    _new_host(monkeypatch, private_host)
    res = ckpt("restore", ref, "--insecure", "--json")
    assert res.code == 0, res.err
    staged = world.restored["web"]["staged"]
    assert staged.images is not None and staged.images[1], "no pages chunk was placed during the download"
    assert staged.rootfs is not None, "the root filesystem was not unpacked during the download"
    assert world.restored["web"]["pages"].startswith(ARGS)
    assert leftovers(private_host) == []


def test_an_incompatible_host_refuses_before_the_memory_moves(world, ckpt, registry, private_host, monkeypatch):
    foreign = HostInfo(arch="s390x", kernel="6.1", cgroup_version=2, cpu_flags=("vx",))
    monkeypatch.setattr(engines_base, "host_info", lambda: foreign)
    ref = _pushed(world, ckpt, registry)
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    _new_host(monkeypatch, private_host)
    registry.requests.clear()
    res = ckpt("restore", ref, "--insecure")
    assert res.code == IncompatibleHost.exit_code
    assert "architecture: checkpoint is s390x" in res.err and "--force" in res.err
    assert _blob_gets(registry) == {manifest["config"]["digest"]}, "blobs moved before the host was checked"
    assert "web" not in world.restored and "unpack" not in world.steps
    forced = ckpt("restore", ref, "--insecure", "--force")
    assert forced.code == 0, forced.err


def test_inspect_of_a_registry_checkpoint_fetches_config_criu_layer_and_the_command_lines_chunk(
        world, ckpt, registry, private_host, monkeypatch):
    ref = _pushed(world, ckpt, registry)
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    roles = {layer["digest"]: layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]}
    _new_host(monkeypatch, private_host)
    registry.requests.clear()
    res = ckpt("inspect", ref, "--insecure", "--json")
    assert res.code == 0, res.err
    view = res.json()
    assert [p["command"] for p in view["processes"]] == ["sleepy --forever"] and view["memory"] == 8192
    fetched = _blob_gets(registry)
    assert manifest["config"]["digest"] in fetched
    # Besides the config, the CRIU layer and the one pages chunk that holds the command line: nothing.
    assert sorted(roles[d] for d in fetched - {manifest["config"]["digest"]}) == ["criu", "pages"]


def test_inspect_shows_the_command_line_from_small_memory(world, ckpt, saved):
    res = ckpt("inspect", saved)
    assert res.code == 0, res.err
    assert "sleepy --forever" in res.out and "engine     runc" in res.out


@pytest.mark.parametrize("engine, words", [
    ("podman", ["Podman restores only from its own export archive", "--engine runc"]),
    ("process", ["holds a container", "only a container runtime sets those up"]),
])
def test_another_engine_cannot_restore_it_and_says_why(world, ckpt, saved, monkeypatch, engine, words):
    from checkpointer.porcelain.engines import _imported

    monkeypatch.setitem(engines._ENGINES, engine, _imported(engine, f"{engine.capitalize()}Engine"))
    res = ckpt("restore", saved, "--engine", engine)
    assert res.code == UsageError.exit_code
    for word in words:
        assert word in res.err
    assert "unpack" not in world.steps


def test_a_process_checkpoint_does_not_go_into_a_container(world, ckpt, monkeypatch):
    class FakeProcess(FakeEngine):
        name = "process"

    trees = World(states={"job": "running"})
    monkeypatch.setitem(engines._ENGINES, "process", lambda ctx: FakeProcess(ctx, trees))
    assert ckpt("save", "--engine", "process", "--pid", "7", "job:v1").code == 3  # no such process yet
    trees.states["7"] = "running"
    assert ckpt("save", "--pid", "7", "job:v1").code == 0
    res = ckpt("restore", "job:v1", "--engine", "runc")
    assert res.code == UsageError.exit_code and "a bare process checkpoint has no root filesystem" in res.err
    assert "--engine process" in res.err


def test_an_unknown_engine_is_a_usage_error(world, ckpt, saved):
    res = ckpt("restore", saved, "--engine", "lxc")
    assert res.code == UsageError.exit_code and "one of: runc, podman, process" in res.err


def test_a_taken_name_is_refused_unless_it_runs_and_that_is_fine(world, ckpt, saved):
    assert ckpt("restore", saved).code == 0
    again = ckpt("restore", saved)
    assert again.code == AlreadyExists.exit_code and "exists already" in again.err
    ok = ckpt("restore", saved, "--if-running-ok", "--json")
    assert ok.code == 0 and ok.json()["already_running"] is True
    assert world.steps.count("runtime restore") == 1


@pytest.mark.parametrize("step", ["unpack", "runtime restore"])
def test_a_failed_restore_removes_what_it_made(world, ckpt, saved, private_host, step):
    world.fail_at = step
    res = ckpt("restore", saved, "--name", "copy")
    assert res.code == Injected.exit_code
    assert "copy" not in world.states and "copy" not in world.restored and world.steps[-1] == "remove"
    assert leftovers(private_host) == []


@pytest.mark.parametrize("step", ["why_not", "occupant", "unpack", "runtime restore"])
def test_ctrl_c_at_each_restore_step_exits_130_and_leaves_nothing(world, ckpt, saved, private_host, step):
    world.interrupt_at = step
    res = ckpt("restore", saved, "--name", "copy")
    assert res.code == 130 and "interrupted" in res.err
    assert "copy" not in world.states and "copy" not in world.restored
    assert leftovers(private_host) == []


def test_a_damaged_blob_from_the_registry_restores_nothing(world, ckpt, registry, private_host, monkeypatch):
    ref = _pushed(world, ckpt, registry)
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    pages = [layer["digest"] for layer in manifest["layers"] if layer["annotations"]["dev.ckpt.layer.role"] == "pages"]
    registry.corrupt_blob.add(pages[0])
    _new_host(monkeypatch, private_host)
    res = ckpt("restore", ref, "--insecure")
    assert res.code == CorruptData.exit_code and "digest" in res.err
    assert "web" not in world.restored and leftovers(private_host) == []


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(d / "key.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(d / "key.pem"), "-pubout", "-out", str(d / "pub.pem")],
                   check=True, capture_output=True)
    return d / "pub.pem", d / "key.pem"


def test_an_encrypted_checkpoint_needs_its_key(world, ckpt, registry, keys, private_host, monkeypatch):
    pub, key = keys
    ref = f"{registry.host}/team/secret:v1"
    assert ckpt("save", "web", ref, "--insecure", "--encrypt-to", str(pub)).code == 0
    manifest = json.loads(registry.manifests[("team/secret", "v1")][0])
    assert all(layer["mediaType"].endswith("+encrypted") for layer in manifest["layers"])
    _new_host(monkeypatch, private_host)
    refused = ckpt("restore", ref, "--insecure")
    assert refused.code == UsageError.exit_code and "encrypted" in refused.err and "--decrypt-key" in refused.err
    assert "web" not in world.restored
    shown = ckpt("inspect", ref, "--insecure", "--json")  # its config, not its processes
    assert shown.code == 0 and shown.json()["processes"] == [] and shown.json()["config"]["engine"] == "runc"
    res = ckpt("restore", ref, "--insecure", "--decrypt-key", str(key))
    assert res.code == 0, res.err
    assert world.restored["web"]["pages"].startswith(ARGS)


def test_a_podman_checkpoint_with_a_whole_rootfs_goes_back_into_runc(world, podman_world, ckpt):
    """What a runtime hook publishes of a Podman container: the full root filesystem and the spec,
    none of Podman's own files. runc restores that by default; Podman could not."""
    assert isinstance(engines.get("podman", None), FakePodman)
    assert ckpt("save", "db", "db:v1").code == 0
    res = ckpt("restore", "db:v1", "--json")
    assert res.code == 0 and res.json()["engine"] == "runc"
    assert world.states["db"] == "running" and podman_world.steps[-1] == "commit"
