"""Real runc + CRIU + registry: `runc checkpoint` of an annotated container publishes it, with no
ckpt command typed; `ckpt restore` of what was published continues the workload.

The hooks are installed under a private prefix, and containers reach them through the
annotation org.criu.config=<private criu.conf>: the host's /etc/criu is never touched."""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from hook_helpers import annotate, hooks_cli, install, runc_checkpoint
from support.registry_server import RegistryServer, free_port
from support.sample import ckpt, make_bundle, read_state, runc_status, start, wait_for

from checkpointer.hooks import keys

pytestmark = pytest.mark.e2e

HOOK_BUDGET_MS = 2000  # the action script must give the runtime its checkpoint back within this


def _annotated(bundle_template: Path, tmp_path: Path, criu_conf: Path, annotations: dict[str, str],
               name: str = "bundle") -> Path:
    bundle = make_bundle(bundle_template, tmp_path / name)
    annotate(bundle, {keys.CRIU_CONFIG: str(criu_conf), **annotations})
    return bundle


def test_runc_checkpoint_publishes_and_restore_continues(bundle_template, tmp_path, runc_root, container_name,
                                                         installed):
    with RegistryServer(tmp_path, auth="none") as reg:
        ref = f"{reg.host}/hooks/{container_name}:v1"
        bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {keys.PUBLISH_TO: ref})
        start(runc_root, bundle, container_name)
        before = wait_for(bundle / "rootfs", lambda s: s.counter >= 5)

        wall, res = runc_checkpoint(runc_root, container_name, tmp_path / "images")
        assert res.returncode == 0, res.stderr
        at_dump = read_state(bundle / "rootfs")
        assert runc_status(runc_root, container_name) is None

        [job] = installed.wait_jobs(1)
        assert job["state"] == "published", job
        assert job["destination"] == ref and job["container"] == container_name and job["engine"] == "runc"
        assert 0 < job["hook_ms"] < HOOK_BUDGET_MS
        job_dir = installed.spool / "jobs" / job["id"]
        assert sorted(p.name for p in job_dir.iterdir()) == ["job.json", "lock", "spec.json"]  # data cleaned up

        raw = subprocess.run(["skopeo", "inspect", "--raw", *reg.skopeo_args(), f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        manifest = json.loads(raw)
        assert manifest["artifactType"] == "application/vnd.ckpt.checkpoint.v1"
        assert {layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]} >= {
            "criu", "pages", "rootfs", "spec"}

        # Nothing of the container is left on this host but what the registry holds.
        shutil.rmtree(bundle)
        shutil.rmtree(tmp_path / "images")
        restore_home = tmp_path / "restore-home"
        restore_home.mkdir()
        out = ckpt("restore", "--runc-root", str(runc_root), ref, "--json", home=restore_home, check=True)
        info = json.loads(out.stdout)
        assert info["digest"] == job["digest"]
        after = wait_for(Path(info["bundle"]) / "rootfs",
                         lambda s: s.counter > at_dump.counter + 4 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
        assert after.verified == before.checksum
    assert "published" in (installed.spool / "hooks.log").read_text()


def test_unannotated_container_is_left_alone(bundle_template, tmp_path, runc_root, container_name, installed):
    bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {})
    start(runc_root, bundle, container_name)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
    _, res = runc_checkpoint(runc_root, container_name, tmp_path / "images")
    assert res.returncode == 0, res.stderr

    # Annotated, but whoever ran runc switched the hooks off for this checkpoint.
    other = f"{container_name}-off"
    bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {keys.PUBLISH_TO: "r.invalid/x/y:v1"},
                        name="bundle-off")
    start(runc_root, bundle, other)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
    _, res = runc_checkpoint(runc_root, other, tmp_path / "images-off", env={keys.ENV_SWITCH: "off"})
    assert res.returncode == 0, res.stderr

    assert installed.jobs() == []
    assert not (installed.spool / "jobs").exists() or list((installed.spool / "jobs").iterdir()) == []


def test_registry_down_the_checkpoint_still_succeeds_and_the_failure_shows(bundle_template, tmp_path, runc_root,
                                                                          container_name, installed):
    port = free_port()  # nothing listens there yet
    ref = f"127.0.0.1:{port}/hooks/{container_name}:v1"
    bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {keys.PUBLISH_TO: ref})
    start(runc_root, bundle, container_name)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 3)

    wall, res = runc_checkpoint(runc_root, container_name, tmp_path / "images")
    assert res.returncode == 0, res.stderr
    assert wall < 5.0, f"runc checkpoint took {wall:.2f}s with the registry down"
    assert runc_status(runc_root, container_name) is None  # checkpointed and stopped, as runc does

    [job] = installed.wait_jobs(1)
    assert job["state"] == "failed" and job["hook_ms"] < HOOK_BUDGET_MS
    assert "127.0.0.1" in job["error"] and f"ckpt hooks retry {job['id']}" in job["hint"]
    text = hooks_cli("status", "--prefix", str(installed.prefix)).stdout
    assert "failed" in text and job["id"] in text and "1 jobs: 0 pending, 0 stalled, 1 failed, 0 published" in text
    assert installed.status()["summary"] == {"pending": 0, "stalled": 0, "failed": 1, "published": 0}
    assert "failed" in (installed.spool / "hooks.log").read_text()
    assert (installed.spool / "jobs" / job["id"] / "layout").is_dir()  # packed and kept for a retry

    # The registry comes up (on that very port): a retry publishes what was packed.
    with mock.patch("support.registry_server.free_port", return_value=port), \
            RegistryServer(tmp_path, auth="none") as reg:
        assert reg.host == f"127.0.0.1:{port}"
        out = json.loads(hooks_cli("retry", "--prefix", str(installed.prefix), "--json").stdout)
        assert out == [{"job": job["id"], "state": "published", "error": "", "digest": job["digest"]}]
        inspect = json.loads(ckpt("inspect", ref, "--json", home=installed.home, check=True).stdout)
        assert inspect["digest"] == job["digest"]
        assert inspect["config"]["container"]["id"] == container_name
        assert inspect["processes"][0]["command"].startswith("/bin/workload")
    [again] = installed.jobs()
    assert again["state"] == "published" and again["attempts"] == 2


def test_broken_hooks_never_break_the_checkpoint(bundle_template, tmp_path, runc_root, container_name, installed):
    """An unreadable config or a missing interpreter: the runtime's checkpoint still succeeds."""
    bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {keys.PUBLISH_TO: "r.invalid/x/y:v1"})
    start(runc_root, bundle, container_name)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
    installed.config.write_text("{ not json")
    _, res = runc_checkpoint(runc_root, container_name, tmp_path / "images", "--leave-running")
    assert res.returncode == 0, res.stderr
    action = installed.prefix / "libexec" / "ckpt" / "criu-action"
    action.write_text(action.read_text().replace("/bin/python", "/bin/no-such-python"))
    _, res = runc_checkpoint(runc_root, container_name, tmp_path / "images-2", "--leave-running")
    assert res.returncode == 0, res.stderr
    assert runc_status(runc_root, container_name) == "running"
    assert not (installed.spool / "jobs").exists() or list((installed.spool / "jobs").iterdir()) == []


def test_hook_latency(bundle_template, tmp_path, runc_root, container_name):
    """What the hook costs the runtime: checkpoint wall time of an annotated container against an
    unannotated one (same hooks installed), and the hook's own time; medians of several runs."""
    hooks = install(tmp_path, "--retry-delays", "")
    runs = 5
    walls: dict[str, list[float]] = {}
    for label, extra in (("plain", {}), ("published", {keys.PUBLISH_TO: "web:latest"})):
        name = f"{container_name}-{label}"
        bundle = _annotated(bundle_template, tmp_path, hooks.criu_conf, extra, name=f"bundle-{label}")
        start(runc_root, bundle, name)
        wait_for(bundle / "rootfs", lambda s: s.counter >= 2)
        for i in range(runs):
            wall, res = runc_checkpoint(runc_root, name, tmp_path / f"images-{label}-{i}", "--leave-running")
            assert res.returncode == 0, res.stderr
            walls.setdefault(label, []).append(wall)
    jobs = hooks.wait_jobs(runs)
    assert [j["state"] for j in jobs] == ["published"] * runs  # into the local store: web:latest
    hook_ms = statistics.median(j["hook_ms"] for j in jobs)
    overhead = statistics.median(walls["published"]) - statistics.median(walls["plain"])
    report = {"hook_ms_median": hook_ms, "hook_ms": [j["hook_ms"] for j in jobs],
              "checkpoint_s_median_plain": statistics.median(walls["plain"]),
              "checkpoint_s_median_published": statistics.median(walls["published"]), "overhead_s": overhead}
    print("hook latency:", json.dumps(report))
    assert hook_ms < HOOK_BUDGET_MS / 2
    assert overhead < HOOK_BUDGET_MS / 1000
    listing = json.loads(ckpt("ls", "--json", home=hooks.home, check=True).stdout)
    assert [e["reference"] for e in listing] == ["web:latest"]


def test_retry_publishes_what_was_spooled_when_the_publisher_never_ran(bundle_template, tmp_path, runc_root,
                                                                      container_name, installed):
    config = json.loads(installed.config.read_text())
    config[keys.CFG_PYTHON] = str(tmp_path / "no-such-python")  # the publisher cannot start
    installed.config.write_text(json.dumps(config))
    bundle = _annotated(bundle_template, tmp_path, installed.criu_conf, {keys.PUBLISH_TO: "spooled:v1"})
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    _, res = runc_checkpoint(runc_root, container_name, tmp_path / "images")
    assert res.returncode == 0, res.stderr

    [job] = installed.wait_jobs(1)
    assert job["state"] == "failed" and "publisher did not start" in job["error"]
    assert (installed.spool / "jobs" / job["id"] / "images" / "inventory.img").is_file()
    shutil.rmtree(tmp_path / "images")  # the runtime's own copy may go: the spool has its own

    config[keys.CFG_PYTHON] = ""  # back to the interpreter that runs `ckpt hooks`
    installed.config.write_text(json.dumps(config))
    out = json.loads(hooks_cli("retry", job["id"], "--prefix", str(installed.prefix), "--json").stdout)
    assert out[0]["state"] == "published"
    restored = ckpt("restore", "--runc-root", str(runc_root), "spooled:v1", "--name", f"{container_name}-r",
                    "--json", home=installed.home, check=True)
    rootfs = Path(json.loads(restored.stdout)["bundle"]) / "rootfs"
    assert wait_for(rootfs, lambda s: s.counter > before.counter + 2).nonce == before.nonce
