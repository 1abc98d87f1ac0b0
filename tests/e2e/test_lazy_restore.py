"""`ckpt restore --lazy` from a real registry, through the ckpt command line, with real CRIU and runc:
the container runs before its memory has arrived and carries on with its memory intact once every
page is in; `ckpt status` follows the delivery. When the memory cannot arrive (the registry stops
mid-transfer, a chunk was tampered with) the container is killed and nothing of it is left; a ckpt
killed at any point leaves no container hung. The bytes each command moves are counted by a proxy
in front of the registry (support/recording_proxy.py), independent of ckpt's own counters: inspect
and the checks before a restore read only what they need, and a restart from the node's cache
fetches no blob at all."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.recording_proxy import RecordingProxy
from support.procs import process_gone
from support.registry_server import RegistryServer
from support.sample import REPO, ckpt, make_bundle, read_state, runc_status, start, wait_for

from checkpointer.errors import CorruptData, IncompatibleHost, Unreachable
from checkpointer.format import roles
from checkpointer.format.read import unpack_layer
from checkpointer.lazy.chunks import ChunkMap
from checkpointer.lazy.pagemap import PageIndex
from checkpointer.lazy.registry_source import RegistrySource
from checkpointer.oci import tarball
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest
from checkpointer.registry import Registry
from checkpointer.registry.manifests import fetch_manifest


@dataclass
class Saved:
    """A sample workload checkpointed into a registry; restores go through `proxy` into `home`."""

    name: str
    ref: str  # through the proxy
    registry: RegistryServer
    proxy: RecordingProxy
    manifest: Manifest
    digest: str  # of the manifest
    before: object  # the workload's state at the checkpoint
    home: Path  # the target's CKPT_HOME: empty, nothing of the source
    runc_root: Path

    @property
    def repository(self) -> str:
        return self.ref.split("/", 1)[1].rsplit(":", 1)[0]

    def blob_sizes(self) -> dict[str, int]:
        return {d.digest: d.size for d in (self.manifest.config, *self.manifest.layers)}

    def restore(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return ckpt("restore", "--runc-root", str(self.runc_root), *args, home=self.home, timeout=timeout)

    def status(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return ckpt("status", self.name, *args, home=self.home, timeout=timeout)

    def bundle(self) -> Path:
        return self.home / "containers" / self.name


def _save(bundle_template: Path, tmp_path: Path, runc_root: Path, name: str, registry: RegistryServer,
          proxy: RecordingProxy, mem: int) -> Saved:
    bundle = make_bundle(bundle_template, tmp_path / "bundle",
                         ["/bin/workload", "--mem", str(mem), "--state", "/state", "--interval-ms", "50",
                          "--verify-every", "4", "--seed", str(random.randrange(1, 1 << 40))])
    start(runc_root, bundle, name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 5)
    source_home = tmp_path / "source-home"
    ckpt("save", "--runc-root", str(runc_root), name, f"{name}:v1", home=source_home, check=True)
    before = read_state(bundle / "rootfs")  # as the checkpoint holds it
    ckpt("push", f"{name}:v1", f"{registry.host}/lazy/{name}:v1", home=source_home, check=True)
    assert runc_status(runc_root, name) is None  # the checkpoint stopped it
    _retarget(source_home, f"{name}:v1", f"{name}:foreign", _foreign)
    ckpt("push", f"{name}:foreign", f"{registry.host}/lazy/{name}:foreign", home=source_home, check=True)
    with Registry(registry.host) as reg:
        got = fetch_manifest(reg, f"lazy/{name}", "v1")
        manifest = Manifest.from_bytes(got.data)
    shutil.rmtree(bundle)
    home = tmp_path / "target-home"
    home.mkdir()
    return Saved(name, f"{proxy.host}/lazy/{name}:v1", registry, proxy, manifest, got.digest, before, home,
                 runc_root)


def _foreign(config: dict) -> None:
    config["host"]["arch"] = "s390x"


def _retarget(home: Path, ref: str, new_ref: str, change) -> None:  # noqa: ANN001
    """Store a copy of checkpoint `ref` whose config was edited by `change(config_dict)`."""
    layout = Layout(home / "store")
    manifest = layout.read_manifest(layout.resolve(ref))
    config = json.loads(layout.read_blob(manifest.config))
    change(config)
    new_config = layout.put_bytes(json.dumps(config).encode(), manifest.config.media_type)
    edited = Manifest(config=new_config, layers=manifest.layers, annotations=manifest.annotations,
                      artifact_type=manifest.artifact_type)
    layout.tag(new_ref, layout.put_manifest(edited))


@pytest.fixture
def saved(bundle_template, tmp_path, runc_root, container_name, request):
    mem, rate = getattr(request, "param", (16, None))
    with RegistryServer(tmp_path) as registry, RecordingProxy(registry.url, rate=rate) as proxy:
        yield _save(bundle_template, tmp_path, runc_root, container_name, registry, proxy, mem)


def _carried_on(saved: Saved, bundle: Path) -> None:
    """The restored workload ticks on, its memory checksum verified after every page arrived."""
    now = read_state(bundle / "rootfs").counter
    after = wait_for(bundle / "rootfs", lambda s: s.counter > now + 4 and s.ticks_since_verify == 0, timeout=30)
    assert after.nonce == saved.before.nonce, "a new process started instead of the checkpointed one"
    assert after.verified == saved.before.checksum, "memory changed across the lazy restore"


GONE_WAIT = 15.0  # seconds for a restore's processes to go


def _delivery(saved: Saved) -> dict:
    res = saved.status("--json")
    assert res.returncode == 0, res.stderr
    (view,) = json.loads(res.stdout)
    return view


def _status_file(saved: Saved) -> dict:
    return json.loads((Path(_delivery(saved)["workDir"]) / "status.json").read_text())


def _nothing_left(saved: Saved, view: dict) -> None:
    """The container was killed and removed with its bundle; every process of the delivery is gone;
    only the record of what happened is left; the workload never ran on memory that did not arrive."""
    deadline = time.monotonic() + 15
    while runc_status(saved.runc_root, saved.name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runc_status(saved.runc_root, saved.name) is None
    assert not saved.bundle().exists()
    status = json.loads((Path(view["workDir"]) / "status.json").read_text())
    for pid in (status["supervisor_pid"], status["daemon_pid"], status["guard_pid"], status["container_pid"]):
        assert process_gone(pid, GONE_WAIT), f"process {pid} is still there"
    assert sorted(p.name for p in Path(view["workDir"]).iterdir() if p.is_dir()) == ["daemon"]  # no images/


def _loopback_up(pid: int) -> bool:
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show", "lo"], capture_output=True,
                         text=True, check=True).stdout
    return ",UP" in out.split(">", 1)[0]


def test_lazy_restore_from_a_registry_carries_on_with_its_memory(saved):
    res = saved.restore("--lazy", "--wait", "--json", saved.ref)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["container"] == saved.name and out["delivery"]
    assert out["delivered"]["state"] == "complete" and out["delivered"]["error"] is None
    assert out["delivered"]["servedBytes"] == out["delivered"]["totalBytes"] > 0
    _carried_on(saved, saved.bundle())
    assert runc_status(saved.runc_root, saved.name) == "running"
    assert _loopback_up(out["pid"]), "the restored container's loopback is down"
    fetched = saved.proxy.blobs_fetched()
    sizes = saved.blob_sizes()
    assert set(fetched) == set(sizes) and all(fetched[d] == sizes[d] for d in fetched)  # each once, whole
    shown = _delivery(saved)
    assert shown["state"] == "complete" and not shown["alive"]
    status = _status_file(saved)
    assert process_gone(status["daemon_pid"], GONE_WAIT) and process_gone(status["guard_pid"], GONE_WAIT)


def test_a_restart_from_the_cache_fetches_only_the_manifest(saved):
    assert saved.restore("--lazy", "--wait", saved.ref).returncode == 0
    first = saved.proxy.blob_bytes()
    assert first == sum(saved.blob_sizes().values())
    for lazy in (True, False):  # checkpoint once, restore many: lazily and eagerly, from the cache alone
        subprocess.run(["runc", "--root", str(saved.runc_root), "delete", "--force", saved.name], check=True)
        saved.proxy.clear()
        res = saved.restore(*(["--lazy", "--wait"] if lazy else []), saved.ref)
        assert res.returncode == 0, res.stderr
        assert saved.proxy.blob_bytes() == 0, saved.proxy.paths()
        assert {path.split("/")[-2] for _, path in saved.proxy.paths() if path != "/v2/"} == {"manifests"}
        _carried_on(saved, saved.bundle())


@pytest.mark.parametrize("saved", [(128, 3 << 20)], indirect=True)
def test_the_registry_stopped_mid_transfer_kills_the_container(saved):
    res = saved.restore("--lazy", "--lazy-deadline", "3", saved.ref)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    while (st := _status_file(saved))["served_bytes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0 < st["served_bytes"] < st["total_bytes"] and st["state"] == "serving"
    saved.registry.stop()  # in the middle of the transfer: the proxy now reaches nothing
    saved.proxy.stop()
    stopped = time.monotonic()
    res = saved.status("--wait", "--json")
    assert res.returncode == Unreachable.exit_code, res.stdout + res.stderr
    assert time.monotonic() - stopped < 30
    (view,) = json.loads(res.stdout)
    assert view["state"] == "failed" and view["error"]["type"] == "Unreachable"
    assert view["error"]["exitCode"] == Unreachable.exit_code and saved.proxy.host in view["error"]["message"]
    _nothing_left(saved, view)


def _lazy_only_chunk(saved: Saved, tmp_path: Path):  # noqa: ANN202
    """A pages chunk the restore does not read itself (no page of it is read before the container
    runs), found by the checkpoint's pagemaps."""
    images = tmp_path / "criu-images"
    images.mkdir()
    scratch = Layout(tmp_path / "criu-layer", create=True)
    with Registry(saved.registry.host) as reg:
        source = RegistrySource(reg, saved.repository)
        for layer in saved.manifest.layers:
            if layer.annotations.get("dev.ckpt.layer.role") == roles.CRIU:
                scratch.put_bytes(source.read_blob(layer), layer.media_type)
                unpack_layer(scratch, layer, images, tarball.CRIU_IMAGES)
    pages = [d for d in saved.manifest.layers if d.annotations.get("dev.ckpt.layer.role") == roles.PAGES]
    index, cmap = PageIndex.load(images), ChunkMap(pages)
    eager = {c.desc.digest for name, ranges in index.eager.items() for r in ranges for c in cmap.covering(name, *r)}
    lazy = {c.desc.digest for name, ranges in ((n, index.lazy_ranges(n)) for n in cmap.files())
            for r in ranges for c in cmap.covering(name, *r)}
    return max((d for d in saved.manifest.layers if d.digest in lazy - eager), key=lambda d: d.size)


def test_a_tampered_chunk_kills_the_container(saved, tmp_path):
    victim = _lazy_only_chunk(saved, tmp_path)
    hexdigest = victim.digest.split(":")[1]
    stored = saved.registry.workdir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] \
        / hexdigest / "data"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    res = saved.restore("--lazy", "--wait", "--json", saved.ref)
    # The chunk may be found bad while `runc restore` still runs (the restore then fails) or after
    # it returned (the wait fails): either way the exit code and the error are the chunk's.
    assert res.returncode == CorruptData.exit_code, res.stdout + res.stderr
    assert victim.digest in res.stdout + res.stderr and "digest mismatch" in res.stdout + res.stderr
    views = json.loads(ckpt("status", "--json", home=saved.home, check=True).stdout)
    if views:  # the restore returned, and its delivery failed afterwards
        (view,) = views
        assert view["state"] == "failed" and view["error"]["exitCode"] == CorruptData.exit_code
        _nothing_left(saved, view)
    else:  # the restore itself failed: it removed everything, its record too
        assert runc_status(saved.runc_root, saved.name) is None and not saved.bundle().exists()
        assert not list((saved.home / "lazy").iterdir())


def _wait_for_file(pattern: str, home: Path, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((home / "lazy").glob(pattern)) if (home / "lazy").exists() else []
        if found:
            return found[0]
        time.sleep(0.005)
    raise AssertionError(f"no {pattern} appeared")


def _ckpt_process(saved: Saved, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "checkpointer", "restore", "--runc-root", str(saved.runc_root),
                             *args, saved.ref], cwd=REPO, env={**os.environ, "CKPT_HOME": str(saved.home)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("saved", [(128, 4 << 20)], indirect=True)
def test_sigkill_of_ckpt_while_pages_are_served_leaves_no_container_hung(saved):
    cli = _ckpt_process(saved, "--lazy", "--wait")
    work = _wait_for_file("*/restore.json", saved.home).parent
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            st = json.loads((work / "status.json").read_text())
        except (OSError, ValueError):
            st = {}
        if st.get("state") == "serving" and st.get("container_pid") and 0 < st["served_bytes"] < st["total_bytes"]:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"delivery never got under way: {st}")
    cli.send_signal(signal.SIGKILL)  # `ckpt restore --wait`, waiting for the pages
    cli.wait()
    res = saved.status("--wait", "--json")  # the supervisor carries on without it
    assert res.returncode == 0, res.stdout + res.stderr
    (view,) = json.loads(res.stdout)
    assert view["state"] == "complete" and view["servedBytes"] == view["totalBytes"]
    _carried_on(saved, saved.bundle())


@pytest.mark.parametrize("saved", [(64, 8 << 20)], indirect=True)
@pytest.mark.parametrize("moment", ["job.json", "restore.log"])
def test_sigkill_of_ckpt_during_the_restore_leaves_no_container_hung(saved, moment):
    """Killed once the supervisor has its job (before `runc restore` ran), or while `runc restore
    --lazy-pages` runs: the restore either goes through and every page arrives, or nothing is left."""
    cli = _ckpt_process(saved, "--lazy")
    work = _wait_for_file(f"*/{moment}", saved.home).parent
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    res = saved.status("--wait", "--json", "--timeout", "60")
    (view,) = json.loads(res.stdout)
    status = json.loads((work / "status.json").read_text())
    if view["state"] == "complete":  # `runc restore` ran on without ckpt, and delivery with it
        assert res.returncode == 0
        _carried_on(saved, saved.bundle())
    else:  # no restore came: the supervisor stopped, and nothing is left of the container
        assert view["state"] == "failed" and "went away" in view["error"]["message"], view
        _nothing_left(saved, view)
    for pid in (status["supervisor_pid"], status["daemon_pid"] if view["state"] != "complete" else None):
        assert process_gone(pid, GONE_WAIT)


def test_inspect_and_the_checks_before_a_restore_fetch_only_what_they_need(saved):
    sizes, manifest = saved.blob_sizes(), saved.manifest
    role = {d.digest: d.annotations.get("dev.ckpt.layer.role") for d in manifest.layers}
    res = ckpt("inspect", saved.ref, "--json", home=saved.home, check=True)
    view = json.loads(res.stdout)
    assert view["processes"][0]["command"].startswith("/bin/workload --mem 16")
    fetched = saved.proxy.blobs_fetched()
    # the config, the CRIU layer, and of the memory only the chunk that holds the command line
    assert manifest.config.digest in fetched and sorted(role[d] for d in fetched if d in role) == ["criu", "pages"]
    assert sum(fetched.values()) < sum(sizes.values()) / 2

    # A host that cannot take the checkpoint refuses after reading its config, before anything else.
    for lazy in ([], ["--lazy"]):
        shutil.rmtree(saved.home)
        saved.home.mkdir()
        saved.proxy.clear()
        res = saved.restore(*lazy, saved.ref.replace(":v1", ":foreign"))
        assert res.returncode == IncompatibleHost.exit_code, res.stderr
        assert "s390x" in res.stderr
        fetched = saved.proxy.blobs_fetched()
        assert len(fetched) == 1 and not set(fetched) & set(sizes)  # the foreign config, nothing else
        assert runc_status(saved.runc_root, saved.name) is None and not saved.bundle().exists()
        assert not any((saved.home / "lazy").iterdir()) if (saved.home / "lazy").exists() else True

    # Listing an image's checkpoints reads the referrers, no blob.
    saved.proxy.clear()
    res = ckpt("ls", f"{saved.proxy.host}/lazy/{saved.name}@{saved.digest}", home=saved.home)
    assert res.returncode == 0, res.stderr
    assert saved.proxy.blob_bytes() == 0
