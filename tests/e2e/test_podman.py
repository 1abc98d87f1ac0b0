"""Real Podman (with runc) + CRIU: save Podman containers with ckpt, restore them with ckpt or with
Podman itself, and restore Podman's own checkpoint images with ckpt."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support.registry_server import RegistryServer
from support.sample import WorkloadState, ckpt, parse_state

from checkpointer.criu import probe
from checkpointer.errors import CriuFailed, NotFound, UsageError

# What works here (docs: /work/shared/notes/environment.md): crun fails on cgroup v1 hybrid.
RUN_FLAGS = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=1024:1024"]
WORKLOAD = ["/bin/workload", "--mem", "16", "--state", "/state", "--interval-ms", "50", "--verify-every", "4"]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


class Podman:
    """Containers and images a test makes; all removed afterwards."""

    def __init__(self) -> None:
        self.containers: list[str] = []
        self.images: list[str] = []

    def name(self, prefix: str = "ckpt-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.containers.append(name)
        return name

    def image(self, name: str) -> str:
        self.images.append(name)
        return name

    def run(self, image: str, args: list[str] = WORKLOAD) -> str:
        name = self.name()
        podman("run", "-d", "--name", name, *RUN_FLAGS, image, *args)
        return name

    def cleanup(self) -> None:
        for name in self.containers:
            podman("rm", "--force", "--time", "0", name, check=False)
        for image in reversed(self.images):
            podman("rmi", "--force", image, check=False)


def state(name: str) -> WorkloadState:
    return parse_state(podman("exec", name, "cat", "/state").stdout)


def wait_for(name: str, predicate, timeout: float = 20.0) -> WorkloadState:  # noqa: ANN001
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = state(name)
            if predicate(last):
                return last
        except (AssertionError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"workload in {name} never matched within {timeout}s; last seen: {last}")


def status(name: str) -> str | None:
    res = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


@pytest.fixture(scope="session")
def podman_base(bundle_template: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A base image with busybox and the sample workload, made with `podman import` (no public registry)."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh --test installs it)")
    tar = tmp_path_factory.mktemp("podman-base") / "rootfs.tar"
    subprocess.run(["tar", "-C", str(bundle_template / "rootfs"), "-cf", str(tar), "."], check=True)
    name = f"localhost/ckpt-test-base-{uuid.uuid4().hex[:8]}:v1"
    podman("import", str(tar), name)
    yield name
    podman("rmi", "--force", name, check=False)


@pytest.fixture
def pm():  # noqa: ANN201
    tracker = Podman()
    yield tracker
    tracker.cleanup()


def test_save_push_wipe_restore_continues(podman_base, pm, tmp_path, ckpt_home):
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        # The base image lives in the registry too, and the container names it there, so the restore
        # can re-create it after it is gone from this host.
        base = pm.image(f"{reg.host}/base/sample:v1")
        podman("tag", podman_base, base)
        podman("push", "--tls-verify=false", base)
        name = pm.run(base)
        before = wait_for(name, lambda s: s.counter >= 5)

        ref = f"{reg.host}/checkpoints/{name}:v1"
        saved = json.loads(ckpt("save", name, ref, "--insecure", "--json", home=ckpt_home, check=True).stdout)
        assert saved["references"] == [ref]
        assert status(name) == "exited"  # podman checkpoint stops the container

        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                             capture_output=True, text=True, check=True).stdout
        manifest = json.loads(raw)
        assert manifest["artifactType"] == "application/vnd.ckpt.checkpoint.v1"
        assert {layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]} >= {
            "criu", "pages", "spec", "engine"}
        assert manifest["annotations"]["org.opencontainers.image.base.name"] == base
        assert manifest["annotations"]["org.opencontainers.image.base.digest"].startswith("sha256:")
        assert manifest["annotations"]["org.criu.checkpoint.engine.name"] == "podman"

        # Wipe this host: the container, its image (every tag of it), ckpt's store.
        podman("rm", "--force", "--time", "0", name)
        podman("rmi", "--force", base, podman_base)
        assert podman("image", "exists", base, check=False).returncode != 0
        shutil.rmtree(ckpt_home)
        ckpt_home.mkdir()

        out = ckpt("restore", ref, "--insecure", "--json", home=ckpt_home, check=True)
        info = json.loads(out.stdout)
        assert info["engine"] == "podman" and info["container"] == name and info["bundle"] is None
        assert status(name) == "running"
        assert podman("image", "exists", base, check=False).returncode == 0  # pulled back from the registry
        after = wait_for(name, lambda s: s.counter > before.counter + 4 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
        assert after.verified == before.checksum, "memory changed across the checkpoint"
    # The next test needs the local base image back.
    podman("tag", base, podman_base)


def test_leave_running_restore_copy_and_refusals(podman_base, pm, ckpt_home):
    name = pm.run(podman_base)
    before = wait_for(name, lambda s: s.counter >= 3)
    ckpt("save", "--leave-running", name, "snap:v1", home=ckpt_home, check=True)
    assert status(name) == "running"

    copy = pm.name("ckpt-copy")
    info = json.loads(ckpt("restore", "snap:v1", "--name", copy, "--json", home=ckpt_home, check=True).stdout)
    assert info["container"] == copy
    after = wait_for(copy, lambda s: s.counter > before.counter and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce and after.verified == before.checksum
    assert status(name) == "running"

    again = ckpt("restore", "snap:v1", "--name", copy, home=ckpt_home)
    assert again.returncode == 4 and "exists already" in again.stderr
    ok = json.loads(ckpt("restore", "snap:v1", "--name", copy, "--if-running-ok", "--json", home=ckpt_home,
                         check=True).stdout)
    assert ok["already_running"] is True

    # Into runc it cannot go, and ckpt says exactly why.
    res = ckpt("restore", "snap:v1", "--engine", "runc", "--name", pm.name(), home=ckpt_home)
    assert res.returncode == UsageError.exit_code
    text = " ".join(res.stderr.split())
    assert "cannot be restored into runc" in text and "rootfs-diff.tar" in text and podman_base in text
    assert "--engine podman" in text
    res = ckpt("restore", "snap:v1", "--engine", "process", home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "container runtime" in res.stderr


def test_failed_save_leaves_container_running(podman_base, pm, ckpt_home):
    args = ["/bin/workload", "--mem", "4", "--state", "/state", "--interval-ms", "50", "--lock", "/lockfile"]
    name = pm.run(podman_base, args)
    before = wait_for(name, lambda s: s.counter >= 3)
    res = ckpt("save", name, home=ckpt_home)
    assert res.returncode == CriuFailed.exit_code, res.stderr
    assert "podman could not checkpoint" in res.stderr
    assert status(name) == "running"
    assert wait_for(name, lambda s: s.counter > before.counter + 3).nonce == before.nonce
    assert ckpt("ls", "--json", home=ckpt_home, check=True).stdout.strip() == "[]"
    saved = ckpt("save", "--engine", "podman", "--file-locks", name, home=ckpt_home)
    assert saved.returncode == 0, saved.stderr


def test_restore_without_base_image_is_not_found_and_leaves_nothing(podman_base, pm, ckpt_home):
    base = pm.image(f"localhost/ckpt-test-gone-{uuid.uuid4().hex[:8]}:v1")
    podman("tag", podman_base, base)
    name = pm.run(base)
    wait_for(name, lambda s: s.counter >= 2)
    ckpt("save", name, "gone:v1", home=ckpt_home, check=True)
    podman("rm", "--force", "--time", "0", name)
    podman("rmi", base)

    res = ckpt("restore", "gone:v1", home=ckpt_home)
    assert res.returncode == NotFound.exit_code, res.stderr
    assert base in " ".join(res.stderr.split())
    assert status(name) is None


def test_save_of_unknown_container_names_both_engines(ckpt_home, tmp_path):
    res = ckpt("save", "--runc-root", str(tmp_path), "no-such-ckpt-container", home=ckpt_home)
    assert res.returncode == NotFound.exit_code
    assert "no runc container" in res.stderr and "Podman" in res.stderr


def test_podman_checkpoint_image_restored_by_ckpt(podman_base, pm, tmp_path, ckpt_home):
    """An image from `podman container checkpoint --create-image`, pushed with podman, restored by ckpt."""
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        name = pm.run(podman_base)
        before = wait_for(name, lambda s: s.counter >= 5)
        image = pm.image(f"{reg.host}/podman/{name}:ckpt")
        podman("container", "checkpoint", "--create-image", image, name)
        podman("push", "--tls-verify=false", image)
        podman("rm", "--force", "--time", "0", name)

        view = json.loads(ckpt("inspect", image, "--insecure", "--json", home=ckpt_home, check=True).stdout)
        assert view["origin"] == "podman-image" and view["config"]["engine"] == "podman"
        # Podman records CRIU's version as a number (40201); ckpt reads it back as the dotted one.
        assert view["config"]["criu"]["version"] == probe.version()
        assert view["config"]["base"]["name"] == podman_base
        out = json.loads(ckpt("restore", image, "--insecure", "--json", home=ckpt_home, check=True).stdout)
        assert out["container"] == name and out["engine"] == "podman"
        after = wait_for(name, lambda s: s.counter > before.counter + 2 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce and after.verified == before.checksum


def test_compat_podman_image_restored_by_podman(podman_base, pm, tmp_path, ckpt_home):
    """`ckpt save --compat podman` to a registry; Podman itself pulls and restores the image unchanged."""
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        name = pm.run(podman_base)
        before = wait_for(name, lambda s: s.counter >= 5)
        image = pm.image(f"{reg.host}/compat/{name}:podman")
        ckpt("save", name, image, "--compat", "podman", "--insecure", home=ckpt_home, check=True)
        podman("rm", "--force", "--time", "0", name)

        raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
                                        capture_output=True, text=True, check=True).stdout)
        assert raw["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        assert "artifactType" not in raw and len(raw["layers"]) == 1
        assert raw["annotations"]["io.podman.annotations.checkpoint.runtime.name"] == "runc"
        assert not any(k.startswith("io.kubernetes.cri-o.") for k in raw["annotations"])

        podman("pull", "--tls-verify=false", image)
        copy = pm.name("ckpt-podman")
        podman("container", "restore", "--name", copy, image)
        after = wait_for(copy, lambda s: s.counter > before.counter + 2 and s.ticks_since_verify == 0)
        assert after.nonce == before.nonce and after.verified == before.checksum


def test_export_archive_restored_by_podman_import(podman_base, pm, tmp_path, ckpt_home):
    name = pm.run(podman_base)
    before = wait_for(name, lambda s: s.counter >= 5)
    ckpt("save", name, "exp:v1", home=ckpt_home, check=True)
    podman("rm", "--force", "--time", "0", name)
    archive = tmp_path / "export" / f"{name}.tar.zst"
    out = json.loads(ckpt("export", "exp:v1", str(archive), "--json", home=ckpt_home, check=True).stdout)
    assert out["size"] == archive.stat().st_size
    assert archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd, as the name says
    podman("container", "restore", "--import", str(archive))
    after = wait_for(name, lambda s: s.counter > before.counter + 2 and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce and after.verified == before.checksum
