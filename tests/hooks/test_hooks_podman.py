"""Real Podman (runc runtime) + CRIU + registry: `podman container checkpoint` of a container run
with `--annotation dev.ckpt.publish-to=REF` publishes it in ckpt's format; the OCI hook guards
containers annotated `dev.ckpt.restore-from`, under Podman (oci-hooks.d) and plain runc."""
from __future__ import annotations

import json
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from hook_helpers import annotate
from support.registry_server import RegistryServer
from support.sample import WorkloadState, ckpt, make_bundle, read_state, runc_status, wait_for

from checkpointer.hooks import keys

pytestmark = pytest.mark.e2e

# What works on these hosts (/work/shared/notes/environment.md): crun fails on hybrid cgroup v1.
GLOBAL = ["--runtime", "runc"]
RUN = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
WORKLOAD = "/bin/workload --mem 16 --state /state --interval-ms 50 --verify-every 4"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *GLOBAL, *args], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


@pytest.fixture(scope="module")
def image(bundle_template, tmp_path_factory):  # noqa: ANN001, ANN201
    """The sample workload's rootfs as a Podman image (podman import), removed afterwards."""
    name = f"localhost/ckpt-hooks-test-{uuid.uuid4().hex[:8]}:latest"
    archive = tmp_path_factory.mktemp("image") / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle_template / "rootfs", arcname=".")
    podman("import", str(archive), name)
    yield name
    podman("rmi", "--force", name, check=False)


@pytest.fixture
def names():  # noqa: ANN201
    """Container names for this test; every one of them is removed afterwards."""
    made: list[str] = []

    def new(prefix: str = "ckpt-hooks-test") -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    for name in made:
        podman("rm", "--force", "--time", "0", name, check=False)


def state_in(rootfs: Path) -> WorkloadState | None:
    try:
        return read_state(rootfs)
    except (OSError, ValueError, KeyError):
        return None


def wait_podman(name: str, predicate, timeout: float = 20.0) -> WorkloadState:  # noqa: ANN001
    merged = Path(podman("inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", name).stdout.strip())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state_in(merged)
        if current and predicate(current):
            return current
        time.sleep(0.05)
    raise AssertionError(f"workload in {name} never got there: {state_in(merged)}")


def test_podman_checkpoint_publishes_and_ckpt_restore_continues(image, names, tmp_path, runc_root, installed):
    with RegistryServer(tmp_path, auth="none") as reg:
        name = names()
        ref = f"{reg.host}/hooks/podman:{{id}}"  # {id}: the container id's first 12 characters
        # Podman's container root is mode 0555 and ckpt's rootfs layer does not record the root
        # directory's own mode yet, so runc's restore would fail CRIU's check of "."; the workload
        # makes its root 0755 first (test_podman_root_mode below keeps the gap in view).
        podman("run", "-d", "--name", name, *RUN, "--annotation", f"{keys.CRIU_CONFIG}={installed.criu_conf}",
               "--annotation", f"{keys.PUBLISH_TO}={ref}", image, "/bin/sh", "-c", f"chmod 755 / && exec {WORKLOAD}")
        before = wait_podman(name, lambda s: s.counter >= 5)
        cid = podman("inspect", "--format", "{{.Id}}", name).stdout.strip()

        started = time.monotonic()
        podman("container", "checkpoint", name)
        assert time.monotonic() - started < 10
        assert podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "exited"

        [job] = installed.wait_jobs(1)
        assert job["state"] == "published", job
        assert job["engine"] == "podman" and job["container"] == cid
        assert job["destination"] == f"{reg.host}/hooks/podman:{cid[:12]}"
        assert job["hook_ms"] < 2000

        restore_home = tmp_path / "restore-home"
        restore_home.mkdir()
        copy = names("ckpt-hooks-restored")
        out = ckpt("restore", "--engine", "runc", "--runc-root", str(runc_root), job["destination"], "--name", copy,
                   "--json", home=restore_home, check=True)
        info = json.loads(out.stdout)
        assert info["digest"] == job["digest"]
        after = wait_for(Path(info["bundle"]) / "rootfs",
                         lambda s: s.counter > before.counter + 4 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
        assert after.verified == before.checksum
        view = json.loads(ckpt("inspect", job["destination"], "--json", home=restore_home, check=True).stdout)
        assert view["config"]["engine"] == "podman" and view["config"]["container"]["id"] == cid


def test_podman_root_mode(image, names, tmp_path, runc_root, installed):
    name = names()
    podman("run", "-d", "--name", name, *RUN, "--annotation", f"{keys.CRIU_CONFIG}={installed.criu_conf}",
           "--annotation", f"{keys.PUBLISH_TO}=rootmode:v1", image, *WORKLOAD.split())
    wait_podman(name, lambda s: s.counter >= 2)
    podman("container", "checkpoint", name)
    [job] = installed.wait_jobs(1)
    assert job["state"] == "published", job
    res = ckpt("restore", "--engine", "runc", "--runc-root", str(runc_root), "rootmode:v1", "--name", names(),
               home=installed.home)
    assert res.returncode == 0, res.stderr


def test_oci_hook_under_podman(image, names, installed):
    refused = names()
    res = podman("--hooks-dir", str(installed.hooks_dir), "run", "--name", refused, *RUN, "--annotation",
                 f"{keys.RESTORE_FROM}=registry.example.com/team/web:v1", image, "/bin/echo", "fresh", check=False)
    assert res.returncode != 0 and "fresh" not in res.stdout
    assert "ckpt restore --if-running-ok" in res.stderr and "registry.example.com/team/web:v1" in res.stderr
    warned = names()
    res = podman("--hooks-dir", str(installed.hooks_dir), "run", "--name", warned, *RUN,
                 "--annotation", f"{keys.RESTORE_FROM}=registry.example.com/team/web:v1",
                 "--annotation", f"{keys.RESTORE_POLICY}=warn", image, "/bin/echo", "fresh")
    assert res.stdout.strip() == "fresh"
    plain = names()  # no annotation: the hook is not even run
    assert podman("--hooks-dir", str(installed.hooks_dir), "run", "--name", plain, *RUN, image, "/bin/echo",
                  "plain").stdout.strip() == "plain"
    log = (installed.spool / "hooks.log").read_text()
    assert "starts fresh although" in log and "cannot restore a checkpoint" in log


def test_oci_hook_under_runc(bundle_template, tmp_path, runc_root, container_name, installed):
    bundle = make_bundle(bundle_template, tmp_path / "bundle", args=["/bin/true"])
    annotate(bundle, {keys.RESTORE_FROM: "registry.example.com/team/web:v1"})
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {"createRuntime": [{"path": str(installed.prefix / "libexec" / "ckpt" / "oci-hook"),
                                        "args": ["ckpt-oci-hook", "createRuntime"]}]}
    (bundle / "config.json").write_text(json.dumps(spec))
    res = subprocess.run(["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), container_name],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "an OCI hook cannot restore" in res.stderr + res.stdout
    assert runc_status(runc_root, container_name) is None
