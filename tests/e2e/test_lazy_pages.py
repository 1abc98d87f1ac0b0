"""Lazy restore with real CRIU, runc and a registry: `runc restore --lazy-pages` beside CRIU's
lazy-pages daemon, which takes every lazy page from ckpt's page server, which reads them from a
checkpoint's chunks in an OCI layout or a registry. The workload ticks on and its memory checksum
verifies once every page is in. When pages can no longer come (the registry stops, a chunk is
damaged, the supervisor or the daemon is SIGKILLed) the container is killed, never left waiting in
a page fault and never left running on memory that did not arrive."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.procs import process_gone
from support.registry_server import RegistryServer
from support.sample import make_bundle, read_state, runc_status, start, wait_for

from checkpointer.errors import CorruptData, Unreachable
from checkpointer.format import roles
from checkpointer.format.config import CheckpointConfig
from checkpointer.format.read import open_checkpoint, unpack_layer
from checkpointer.format.write import write_checkpoint
from checkpointer.host import host_info
from checkpointer.lazy.chunks import ChunkMap
from checkpointer.lazy.handle import Delivery
from checkpointer.lazy.job import Job, SourceSpec
from checkpointer.lazy.memory import DELIVERY_RETRY
from checkpointer.lazy.pagemap import PageIndex
from checkpointer.lazy.registry_source import RegistrySource
from checkpointer.lazy.server import DaemonGone
from checkpointer.lazy.status import COMPLETE, EXITED, FAILED, Status
from checkpointer.lazy.stop import Stopper
from checkpointer.oci import tarball
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, push
from checkpointer.registry.manifests import fetch_manifest


@pytest.fixture
def dumped(bundle_template, tmp_path, runc_root, container_name):
    """A running sample workload, checkpointed with runc and packed by ckpt into an OCI layout."""
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    before = wait_for(bundle / "rootfs", lambda s: s.counter >= 5)
    images, work = tmp_path / "dump", tmp_path / "dump-work"
    images.mkdir()
    work.mkdir()
    subprocess.run(["runc", "--root", str(runc_root), "checkpoint", "--image-path", str(images), "--work-path",
                    str(work), container_name], check=True, capture_output=True, timeout=60)
    layout = Layout(tmp_path / "layout", create=True)
    config = CheckpointConfig(engine="runc", runtime="runc", runtime_version="", criu_version="", host=host_info(),
                              container_id=container_name, container_name=container_name,
                              created="2026-01-01T00:00:00Z")
    desc = write_checkpoint(layout, images=images, rootfs=None, spec=None, config=config)
    layout.tag("lazy", desc)
    return bundle, layout, open_checkpoint(layout, desc).manifest, before


def _job(tmp_path: Path, manifest: Manifest, criu_layout: Layout, source: SourceSpec, runc_root: Path, name: str,
         **kw) -> Job:
    """The restore's image directory with the criu role unpacked; its pages come from `source`."""
    base = tmp_path / f"lazy-{time.monotonic_ns()}"
    images, work = base / "images", base / "work"
    images.mkdir(parents=True)
    work.mkdir()
    for layer in manifest.layers:
        if layer.annotations.get("dev.ckpt.layer.role") == roles.CRIU:
            unpack_layer(criu_layout, layer, images, tarball.CRIU_IMAGES)
    runc = ("runc", "--root", str(runc_root))
    stopper = Stopper((*runc, "kill", "--all", name, "KILL"), ((*runc, "delete", "--force", name),))
    chunks = tuple(d for d in manifest.layers if d.annotations.get("dev.ckpt.layer.role") == roles.PAGES)
    return Job(images, work, chunks, source, stopper, **kw)


def _lazy_restore(job: Job, runc_root: Path, bundle: Path, name: str, *, fork: bool = False) -> Delivery:
    delivery = Delivery.fork(job.work) if fork else Delivery.launch(job.work)
    delivery.begin(job)
    res = subprocess.run(["runc", "--root", str(runc_root), "restore", "--detach", "--lazy-pages", "--image-path",
                          str(job.images), "--work-path", str(job.work), "--bundle", str(bundle), name],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True, timeout=60)
    if res.returncode != 0:
        delivery.abandon()
        raise AssertionError(f"runc restore --lazy-pages failed: {res.stderr.decode()}\n"
                             f"{(job.work / 'restore.log').read_text()[-3000:]}")
    state = subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True)
    if state.returncode == 0:  # (delivery may have failed, and the container been removed, already)
        delivery.restored(json.loads(state.stdout)["pid"])
    return delivery




def _carried_on(bundle: Path, before, status: Status) -> None:
    """The restored process ticks on, and its memory checksum verifies after every page arrived."""
    assert status.state == COMPLETE, status.error
    assert status.served_bytes == status.total_bytes > 0
    finished = read_state(bundle / "rootfs").counter
    after = wait_for(bundle / "rootfs", lambda s: s.counter > finished + 4 and s.ticks_since_verify == 0)
    assert after.nonce == before.nonce, "a new process started instead of the checkpointed one"
    assert after.verified == before.checksum, "memory changed across the lazy restore"


def _killed_cleanly(delivery: Delivery, status: Status, runc_root: Path, name: str, bundle: Path, before) -> None:
    """Delivery failed: the container was killed and removed, every helper process is gone, and the
    workload never ran on with memory that did not arrive (its last verification still matches)."""
    assert status.state == FAILED and status.error
    deadline = time.monotonic() + 10  # a restore that failed may still be cleaning up
    while runc_status(runc_root, name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runc_status(runc_root, name) is None
    for pid in (status.daemon_pid, status.guard_pid, status.container_pid):
        assert process_gone(pid), f"process {pid} is still there"
    assert not delivery.job.images.exists()
    last = read_state(bundle / "rootfs")
    assert last.nonce == before.nonce and last.verified == before.checksum


@pytest.mark.parametrize("fork", [False, True], ids=["launched", "forked"])
def test_lazy_restore_from_a_layout(dumped, tmp_path, runc_root, container_name, fork):
    bundle, layout, manifest, before = dumped
    job = _job(tmp_path, manifest, layout, SourceSpec("layout", layout=str(layout.root)), runc_root, container_name)
    delivery = _lazy_restore(job, runc_root, bundle, container_name, fork=fork)
    status = delivery.wait(60)
    assert delivery.process.returncode == 0
    _carried_on(bundle, before, status)
    assert runc_status(runc_root, container_name) == "running"
    assert process_gone(status.daemon_pid) and process_gone(status.guard_pid)
    assert not job.images.exists()  # nothing of the restore is left once every page is in
    assert status.first_request is not None and status.requests > 0


def _pushed(layout: Layout, registry: RegistryServer) -> tuple[RegistryRef, Manifest, Layout]:
    """Push the checkpoint; then read it back from the registry alone: its manifest, and its criu
    layer (all a restore needs before the pages) in a fresh scratch layout."""
    ref = RegistryRef(registry.host, "lazy/sample", "v1")
    with Registry(registry.host) as reg:
        push(layout, layout.resolve("lazy"), ref, registry=reg)
        manifest = Manifest.from_bytes(fetch_manifest(reg, ref.repository, "v1").data)
        scratch = Layout(layout.root.parent / f"scratch-{time.monotonic_ns()}", create=True)
        source = RegistrySource(reg, ref.repository)
        for layer in manifest.layers:
            if layer.annotations.get("dev.ckpt.layer.role") == roles.CRIU:
                scratch.put_bytes(source.read_blob(layer), layer.media_type)
    return ref, manifest, scratch


def test_lazy_restore_from_a_registry_fills_the_cache(dumped, tmp_path, runc_root, container_name):
    bundle, layout, manifest, before = dumped
    pristine = shutil.copytree(bundle, tmp_path / "bundle-again", symlinks=True)  # files as at the dump
    with RegistryServer(tmp_path) as registry:
        ref, manifest, scratch = _pushed(layout, registry)
        cache = tmp_path / "chunk-cache"
        spec = SourceSpec("registry", host=registry.host, repository=ref.repository, cache=str(cache))
        job = _job(tmp_path, manifest, scratch, spec, runc_root, container_name)
        delivery = _lazy_restore(job, runc_root, bundle, container_name)
        status = delivery.wait(60)
        _carried_on(bundle, before, status)
        chunks = {d.digest: d.size for d in job.chunks}
        assert status.fetched_bytes == sum(chunks.values())  # each distinct chunk came over the wire once
        assert all(Layout(cache).has_blob(digest) for digest in chunks)

        # A second restore of the same checkpoint takes every chunk from the cache.
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", container_name], check=True)
        again = container_name + "-again"
        job = _job(tmp_path, manifest, scratch, spec, runc_root, again)
        delivery = _lazy_restore(job, runc_root, pristine, again)
        status = delivery.wait(60)
        _carried_on(pristine, before, status)
        assert status.fetched_bytes == 0


def test_registry_gone_mid_restore_kills_the_container(dumped, tmp_path, runc_root, container_name):
    bundle, layout, manifest, before = dumped
    with RegistryServer(tmp_path) as registry:
        ref, manifest, scratch = _pushed(layout, registry)
        spec = SourceSpec("registry", host=registry.host, repository=ref.repository)
        # No prefetch beyond what is asked for: the pages the process needs next are still remote.
        job = _job(tmp_path, manifest, scratch, spec, runc_root, container_name, budget=1,
                   policy=replace(DELIVERY_RETRY, deadline=3.0))
        delivery = Delivery.start(job)
        registry.stop()  # after the pages the restore reads itself, before the rest
        started = time.monotonic()
        res = subprocess.run(["runc", "--root", str(runc_root), "restore", "--detach", "--lazy-pages",
                              "--image-path", str(job.images), "--work-path", str(job.work), "--bundle", str(bundle),
                              container_name], stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
        # The restore itself asks for a few lazy pages before it reports the restore finished; on a
        # busy machine the deadline may pass while it waits for one: then the restore fails (its
        # processes were killed), which is as good an end.
        if res.returncode != 0:
            delivery.abandon()
        status = delivery.wait(60)
    assert time.monotonic() - started < 30
    assert delivery.process.returncode == Unreachable.exit_code
    assert status.error["type"] == "Unreachable" and status.error["exitCode"] == Unreachable.exit_code
    assert "cannot reach registry " + registry.host in status.error["message"]
    _killed_cleanly(delivery, status, runc_root, container_name, bundle, before)


def test_a_damaged_chunk_kills_the_container(dumped, tmp_path, runc_root, container_name):
    bundle, layout, manifest, before = dumped
    job = _job(tmp_path, manifest, layout, SourceSpec("layout", layout=str(layout.root)), runc_root, container_name,
               budget=1)
    index, cmap = PageIndex.load(job.images), ChunkMap(list(job.chunks))
    eager = {c.desc.digest for name, ranges in index.eager.items() for r in ranges for c in cmap.covering(name, *r)}
    lazy_only = [d for d in job.chunks if d.digest not in eager]  # the restore does not read these itself
    victim = layout.blob_path(max(lazy_only, key=lambda d: d.size).digest)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    delivery = _lazy_restore(job, runc_root, bundle, container_name)
    status = delivery.wait(60)
    assert delivery.process.returncode == CorruptData.exit_code
    assert status.error["type"] == "CorruptData" and "digest mismatch" in status.error["message"]
    _killed_cleanly(delivery, status, runc_root, container_name, bundle, before)


def _stalled(dumped, tmp_path, runc_root, name, registry):
    """A lazy restore whose registry went away: the process waits in a page fault (the deadline
    is far off), the supervisor retries."""
    bundle, layout, manifest, before = dumped
    ref, manifest, scratch = _pushed(layout, registry)
    spec = SourceSpec("registry", host=registry.host, repository=ref.repository)
    job = _job(tmp_path, manifest, scratch, spec, runc_root, name, budget=1, policy=replace(DELIVERY_RETRY, deadline=600))
    delivery = Delivery.start(job)
    registry.stop()
    subprocess.run(["runc", "--root", str(runc_root), "restore", "--detach", "--lazy-pages", "--image-path",
                    str(job.images), "--work-path", str(job.work), "--bundle", str(bundle), name],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, start_new_session=True)
    pid = json.loads(subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True,
                                    check=True).stdout)["pid"]
    delivery.restored(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the workload waits for a page that cannot come
        with open(f"/proc/{pid}/wchan") as f:
            if f.read() == "handle_userfault":
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the restored process never waited in a page fault")
    return delivery, pid, bundle, before


def test_sigkill_of_the_supervisor_gets_the_container_killed(dumped, tmp_path, runc_root, container_name):
    with RegistryServer(tmp_path) as registry:
        delivery, pid, bundle, before = _stalled(dumped, tmp_path, runc_root, container_name, registry)
    status = delivery.status()
    os.kill(delivery.pid, signal.SIGKILL)
    delivery.process.wait()
    assert process_gone(pid), "the restored process was left waiting for its pages"
    deadline = time.monotonic() + 10
    while runc_status(runc_root, container_name) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runc_status(runc_root, container_name) is None  # the guard killed and removed it
    assert process_gone(status.daemon_pid) and process_gone(status.guard_pid)
    last = read_state(bundle / "rootfs")
    assert last.nonce == before.nonce and last.verified == before.checksum


def test_sigkill_of_the_daemon_gets_the_container_killed(dumped, tmp_path, runc_root, container_name):
    with RegistryServer(tmp_path) as registry:
        delivery, pid, bundle, before = _stalled(dumped, tmp_path, runc_root, container_name, registry)
    os.kill(delivery.status().daemon_pid, signal.SIGKILL)
    status = delivery.wait(30)
    assert status.error["type"] == "DaemonGone" and status.error["exitCode"] == DaemonGone.exit_code
    assert delivery.process.returncode == DaemonGone.exit_code
    _killed_cleanly(delivery, status, runc_root, container_name, bundle, before)


def test_a_container_that_exits_ends_delivery_without_a_kill(dumped, tmp_path, runc_root, container_name):
    with RegistryServer(tmp_path) as registry:
        delivery, pid, bundle, before = _stalled(dumped, tmp_path, runc_root, container_name, registry)
    subprocess.run(["runc", "--root", str(runc_root), "kill", container_name, "KILL"], check=True)
    status = delivery.wait(30)
    assert status.state == EXITED and delivery.process.returncode == 0
    assert process_gone(status.daemon_pid) and process_gone(status.guard_pid)
    assert not delivery.job.images.exists()


def test_a_damaged_chunk_the_restore_itself_reads_is_refused_before_it(dumped, tmp_path, runc_root,
                                                                         container_name):
    bundle, layout, manifest, before = dumped
    job = _job(tmp_path, manifest, layout, SourceSpec("layout", layout=str(layout.root)), runc_root, container_name)
    index, cmap = PageIndex.load(job.images), ChunkMap(list(job.chunks))
    (name, ranges), = index.eager.items()
    victim = cmap.covering(name, *ranges[0])[0].desc
    layout.blob_path(victim.digest).write_bytes(b"damaged")
    with pytest.raises(CorruptData, match=victim.digest):
        Delivery.start(job)
    status = Status.read(job.work)
    assert status.state == FAILED and status.error["exitCode"] == CorruptData.exit_code
    assert process_gone(status.guard_pid) and status.daemon_pid is None
    assert not job.images.exists()


def test_an_abandoned_restore_stops_delivery(dumped, tmp_path, runc_root, container_name):
    bundle, layout, manifest, before = dumped
    job = _job(tmp_path, manifest, layout, SourceSpec("layout", layout=str(layout.root)), runc_root, container_name)
    delivery = Delivery.start(job)
    delivery.abandon()  # as a caller whose `runc restore` failed
    status = delivery.wait(30)
    assert status.state == FAILED and status.error["type"] == "Abandoned"
    assert process_gone(status.daemon_pid) and process_gone(status.guard_pid)
    assert not job.images.exists()


def test_sigkill_of_the_supervisor_before_the_restore_leaves_nothing(dumped, tmp_path, runc_root, container_name):
    """A daemon still waiting for its restore does not notice its page server going (it waits in
    accept): the guard ends it."""
    bundle, layout, manifest, before = dumped
    job = _job(tmp_path, manifest, layout, SourceSpec("layout", layout=str(layout.root)), runc_root, container_name)
    delivery = Delivery.start(job)
    status = delivery.status()
    os.kill(delivery.pid, signal.SIGKILL)
    delivery.process.wait()
    assert process_gone(status.daemon_pid) and process_gone(status.guard_pid)
