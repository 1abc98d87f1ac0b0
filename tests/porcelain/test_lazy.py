"""The lazy restore's porcelain as any user: `ckpt restore --lazy` through the real runc engine with
runc scripted and a stand-in page supervisor (what it is told, in which order, and what a failure at
each step leaves: nothing), its refusals with the real supervisor, `ckpt status` over delivery
records in every state, the node's blob cache (a restart from it fetches no blob), and what
`ckpt fsck` does with both."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_engines import runc  # noqa: F401 - the scripted runc fixture
from test_restore import _blob_gets, _new_host, keys  # noqa: F401 - the key pair fixture

from checkpointer.errors import CkptError, CorruptData, CriuFailed, NotFound, UsageError
from checkpointer.lazy import cache as lazy_cache
from checkpointer.lazy.cache import ChunkCache
from checkpointer.lazy.handle import error_of
from checkpointer.lazy.job import JOB_FILE, Job
from checkpointer.lazy.status import COMPLETE, EXITED, FAILED, READY, SERVING, Status, error_json
from checkpointer.lazy.supervisor import LOCK_FILE
from checkpointer.oci.model import Descriptor
from checkpointer.porcelain import cache as porcelain_cache
from checkpointer.porcelain import deliveries
from checkpointer.porcelain.deliveries import LAZY_DIR, RECORD_FILE, Record, list_deliveries, wait_for
from checkpointer.porcelain.home import Home


class FakeProcess:
    pid = 4242
    returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def kill(self) -> None:
        pass


class FakeDelivery:
    """lazy.handle.Delivery without a process: it writes the status a supervisor would, and can be
    told to fail when asked whether the restore may run, or once the restore returned."""

    made: list[FakeDelivery] = []
    fail_ready: CorruptData | None = None
    then: str = SERVING  # the state after `restored`

    def __init__(self, work: Path) -> None:
        self.work, self.process, self.job = work, FakeProcess(), None
        self.said: list[str] = []
        self.lock = os.open(work / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)  # as a live supervisor holds it
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        FakeDelivery.made.append(self)

    def exit(self) -> None:
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1

    @classmethod
    def fork(cls, work: Path) -> FakeDelivery:
        return cls(work)

    launch = fork

    def _status(self, state: str, **kw) -> None:  # noqa: ANN003
        Status(state, 4242, total_bytes=8192, started=time.time(), **kw).write(self.work)

    def submit(self, job: Job) -> None:
        self.job = job
        job.write()
        self.said.append("job")

    def ready(self) -> None:
        if self.fail_ready is not None:
            self._status(FAILED, error=error_json(self.fail_ready))
            raise self.fail_ready
        self._status(READY)

    def restored(self, pid: int) -> None:
        self.said.append(f"restored {pid}")
        if self.then == COMPLETE:
            self._status(COMPLETE, served_bytes=8192, container_pid=pid, finished=time.time())
            self.exit()
        elif self.then == FAILED:
            self._status(FAILED, container_pid=pid, finished=time.time(),
                         error=error_json(CorruptData("pages chunk sha256:ab digest mismatch")))
            self.exit()
        else:
            self._status(SERVING, served_bytes=4096, container_pid=pid)

    def abandon(self) -> None:
        self.said.append("abandon")
        self.exit()

    def close(self) -> None:
        self.said.append("close")

    def error(self):  # noqa: ANN201
        try:
            return error_of(Status.read(self.work))
        except OSError:
            return None


@pytest.fixture
def fake_delivery(monkeypatch: pytest.MonkeyPatch):
    FakeDelivery.made, FakeDelivery.fail_ready, FakeDelivery.then = [], None, SERVING
    monkeypatch.setattr(deliveries, "Delivery", FakeDelivery)
    yield FakeDelivery
    for made in FakeDelivery.made:
        made.exit()


def _lazy_dirs(root: Path) -> list[Path]:
    parent = root / "home" / LAZY_DIR
    return sorted(parent.iterdir()) if parent.exists() else []


def test_a_lazy_restore_hands_the_supervisor_its_job_and_runs_runc_with_lazy_pages(runc, ckpt, fake_delivery,  # noqa: F811
                                                                                   private_host):
    assert ckpt("save", "web", "web:v1").code == 0
    res = ckpt("restore", "--lazy", "web:v1", "--name", "copy", "--json")
    assert res.code == 0, res.err
    out = res.json()
    (delivery,) = fake_delivery.made
    assert out["delivery"] == delivery.work.name and out["container"] == "copy"
    assert delivery.said == ["job", f"restored {out['pid']}", "close"]
    restore = next(call for call in runc.calls if call[0] == "restore")
    assert "--lazy-pages" in restore and "--detach" in restore
    assert restore[restore.index("--work-path") + 1] == str(delivery.work)
    assert restore[restore.index("--image-path") + 1] == str(delivery.work / "images")
    job = json.loads((delivery.work / JOB_FILE).read_text())
    manifest = json.loads((private_host / "home" / "store" / "blobs" / "sha256" /
                           out["digest"].split(":")[1]).read_text())
    pages = [layer["digest"] for layer in manifest["layers"] if layer["annotations"]["dev.ckpt.layer.role"] == "pages"]
    assert [c["digest"] for c in job["chunks"]] == pages
    assert job["source"]["kind"] == "layout" and job["source"]["layout"] == str(private_host / "home" / "store")
    bundle = private_host / "home" / "containers" / "copy"
    assert job["stopper"]["kill"][-4:] == ["kill", "--all", "copy", "KILL"]
    assert job["stopper"]["cleanup"][0][-3:] == ["delete", "--force", "copy"]
    assert job["stopper"]["remove"] == [str(bundle)]
    assert (delivery.work / "images" / "pstree.img").is_file()  # the criu role, not the pages
    assert not list((delivery.work / "images").glob("pages-*.img"))
    assert (bundle / "rootfs" / "bin" / "sleepy").is_file()
    record = json.loads((delivery.work / RECORD_FILE).read_text())
    assert record["container"] == "copy" and record["reference"] == "web:v1" and record["bundle"] == str(bundle)
    shown = ckpt("status", "copy", "--json")
    assert shown.code == 0 and shown.json()[0]["state"] == SERVING and shown.json()[0]["servedBytes"] == 4096
    text = ckpt("status")
    assert "copy" in text.out and "serving" in text.out and "4.0 KiB of 8.0 KiB in (50%)" in text.out


@pytest.mark.parametrize("then, code", [(COMPLETE, 0), (FAILED, CorruptData.exit_code)])
def test_restore_lazy_wait_follows_delivery_to_its_end(runc, ckpt, fake_delivery, then, code):  # noqa: F811
    assert ckpt("save", "web", "web:v1").code == 0
    fake_delivery.then = then
    res = ckpt("restore", "--lazy", "--wait", "web:v1", "--name", "copy", "--json")
    assert res.code == code, res.err
    out = json.loads(res.out)
    assert out["delivered"]["state"] == then
    if then == FAILED:
        assert out["delivered"]["error"]["exitCode"] == CorruptData.exit_code and "digest mismatch" in res.err
    text = ckpt("restore", "--lazy", "--wait", "web:v1", "--name", "again")
    assert text.code == code and "restored again into runc" in text.out and then in text.out


def test_delivery_that_cannot_start_fails_the_restore_and_leaves_nothing(runc, ckpt, fake_delivery,  # noqa: F811
                                                                         private_host):
    assert ckpt("save", "web", "web:v1").code == 0
    fake_delivery.fail_ready = CorruptData("pages chunk sha256:cd digest mismatch")
    res = ckpt("restore", "--lazy", "web:v1", "--name", "copy")
    assert res.code == CorruptData.exit_code and "digest mismatch" in res.err
    assert "restore" not in [c[0] for c in runc.calls] and "copy" not in runc.containers
    assert not (private_host / "home" / "containers" / "copy").exists()
    assert _lazy_dirs(private_host) == [] and fake_delivery.made[0].said[-2:] == ["abandon", "close"]


def test_a_failed_runc_restore_abandons_delivery_and_leaves_nothing(runc, ckpt, fake_delivery,  # noqa: F811
                                                                    private_host):
    assert ckpt("save", "web", "web:v1").code == 0
    runc.fail["restore"] = "criu failed: type RESTORE errno 0"
    res = ckpt("restore", "--lazy", "web:v1", "--name", "copy")
    assert res.code == CriuFailed.exit_code and "lazily" in res.err
    assert "copy" not in runc.containers and not (private_host / "home" / "containers" / "copy").exists()
    assert fake_delivery.made[0].said == ["job", "abandon", "close"] and _lazy_dirs(private_host) == []


def test_a_lazy_restore_from_a_registry_fetches_criu_spec_and_rootfs_only(runc, ckpt, registry, fake_delivery,  # noqa: F811
                                                                          private_host, monkeypatch):
    ref = f"{registry.host}/team/web:v1"
    assert ckpt("save", "web", ref, "--insecure").code == 0
    manifest = json.loads(registry.manifests[("team/web", "v1")][0])
    role = {layer["digest"]: layer["annotations"]["dev.ckpt.layer.role"] for layer in manifest["layers"]}
    target = _new_host(monkeypatch, private_host)
    registry.requests.clear()
    res = ckpt("restore", "--lazy", ref, "--insecure", "--lazy-deadline", "7")
    assert res.code == 0, res.err
    fetched = _blob_gets(registry)
    assert sorted(role.get(d, "config") for d in fetched) == ["config", "criu", "rootfs", "spec"]
    job = json.loads((fake_delivery.made[0].work / JOB_FILE).read_text())
    assert job["source"] == {"kind": "registry", "layout": None, "host": registry.host, "repository": "team/web",
                             "insecure": True, "plain_http": True, "ca_dir": None, "cache": str(target / "cache"),
                             "cache_limit": porcelain_cache.cache_limit(Home(target))}
    assert job["policy"]["deadline"] == 7


def test_what_cannot_be_restored_lazily_is_refused_before_anything_moves(world, ckpt, registry, keys,  # noqa: F811
                                                                         private_host):
    """The real page supervisor starts, and goes again when the restore is refused: nothing is left."""
    assert ckpt("save", "--leave-running", "web", "web:v1").code == 0
    refused = ckpt("restore", "--lazy", "web:v1", "--name", "copy")  # the FakeEngine has no lazy restore
    assert refused.code == UsageError.exit_code and "cannot restore lazily" in refused.err
    assert "copy" not in world.restored and _lazy_dirs(private_host) == []

    pub, _ = keys
    ref = f"{registry.host}/team/secret:v1"
    assert ckpt("save", "web", ref, "--insecure", "--encrypt-to", str(pub)).code == 0
    refused = ckpt("restore", "--lazy", ref, "--insecure", "--engine", "runc")
    assert refused.code == UsageError.exit_code and "encrypted checkpoint cannot be restored lazily" in refused.err

    archive = private_host / "web.tar"
    assert ckpt("export", "web:v1", str(archive)).code == 0
    refused = ckpt("restore", "--lazy", str(archive))
    assert refused.code == UsageError.exit_code
    assert _lazy_dirs(private_host) == []

    assert ckpt("restore", "--wait", "web:v1").code == UsageError.exit_code  # --wait goes with --lazy


def test_a_restart_from_the_cache_fetches_no_blob(world, ckpt, registry, private_host, monkeypatch):
    ref = f"{registry.host}/team/web:v1"
    assert ckpt("save", "web", ref, "--insecure").code == 0
    target = _new_host(monkeypatch, private_host)
    assert ckpt("restore", ref, "--insecure", "--name", "one").code == 0
    assert _blob_gets(registry)
    cache = ChunkCache(target / "cache", 1 << 40)
    assert cache.usage().blobs == len(_blob_gets(registry))
    shutil.rmtree(target / "store")  # gone with `ckpt rm` and gc: the cache still has every blob
    registry.requests.clear()
    res = ckpt("restore", ref, "--insecure", "--name", "two")
    assert res.code == 0, res.err
    assert _blob_gets(registry) == set()
    inspected = ckpt("inspect", ref, "--insecure", "--json")
    assert inspected.code == 0 and _blob_gets(registry) == set()

    monkeypatch.setenv("CKPT_CACHE_SIZE", "0")  # the cache turned off: nothing is kept there
    shutil.rmtree(target / "store")
    shutil.rmtree(target / "cache")
    assert ckpt("restore", ref, "--insecure", "--name", "three").code == 0
    assert ChunkCache(target / "cache", 1 << 40).usage().blobs == 0


# -- ckpt status -------------------------------------------------------------------------------------------


def _record(root: Path, name: str, state: str | None, *, alive: bool = False, error=None, **kw) -> Path:  # noqa: ANN001, ANN003
    work = root / "home" / LAZY_DIR / f"r-{name}"
    work.mkdir(parents=True)
    age = kw.pop("age", 0)
    (work / RECORD_FILE).write_text(json.dumps(Record(name, "runc", f"reg/x/{name}:v1", "sha256:" + "0" * 64,
                                                      None, time.time() - 5).to_json()))
    if state is not None:
        Status(state, 4242, total_bytes=1 << 20, served_bytes=kw.pop("served", 1 << 19), started=time.time() - 5,
               error=error_json(error) if error else None, **kw).write(work)
    if age:  # its last change that long ago
        os.utime(work, (time.time() - age, time.time() - age))
    if alive:  # as a live supervisor holds it
        fd = os.open(work / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.append(fd)
    return work


_held: list[int] = []


@pytest.fixture
def records(private_host):
    yield {
        "live": _record(private_host, "live", SERVING, alive=True),
        "done": _record(private_host, "done", COMPLETE, served=1 << 20, finished=time.time()),
        "bad": _record(private_host, "bad", FAILED, error=CorruptData("chunk x: digest mismatch"),
                       finished=time.time()),
        "lost": _record(private_host, "lost", SERVING),
        "gone": _record(private_host, "gone", None, age=deliveries.START_GRACE + 1),
    }
    while _held:
        os.close(_held.pop())


def test_status_shows_every_delivery_in_its_state(ckpt, records, private_host):
    views = {v.container: v for v in list_deliveries(Home(private_host / "home"))}
    assert {name: v.state for name, v in views.items()} == {
        "live": SERVING, "done": COMPLETE, "bad": FAILED, "lost": deliveries.LOST, "gone": deliveries.GONE}
    assert views["lost"].error().exit_code == 1 and "guard killed" in str(views["lost"].error())
    assert views["bad"].error().exit_code == CorruptData.exit_code
    res = ckpt("status")
    assert res.code == 0
    assert "512.0 KiB of 1.0 MiB in (50%)" in res.out and "error (exit 8): chunk x: digest mismatch" in res.out
    shown = ckpt("status", "--json").json()
    assert [v["container"] for v in shown] == ["bad", "done", "gone", "live", "lost"] or len(shown) == 5
    assert ckpt("status", "bad", "--wait").code == CorruptData.exit_code
    assert ckpt("status", "done", "--wait").code == 0
    assert ckpt("status", "nothing").code == NotFound.exit_code
    assert ckpt("status", "live", "--wait", "--timeout", "0.2").code == 1  # still under way


def test_a_restore_whose_supervisor_has_not_taken_its_lock_yet_is_starting_and_kept(ckpt, private_host):
    """Its directory is made before the supervisor starts: status says starting, fsck --repair
    leaves it (it removed such directories while their supervisor came up)."""
    work = _record(private_host, "new", None)
    (view,) = list_deliveries(Home(private_host / "home"))
    assert view.state == "starting" and not view.final
    assert ckpt("fsck", "--repair").code == 0 and work.is_dir()


def test_a_container_that_ended_on_its_own_is_no_failure(ckpt, private_host):
    _record(private_host, "ended", EXITED, error=CkptError("the container exited before every page was in"),
            finished=time.time())
    (view,) = list_deliveries(Home(private_host / "home"))
    assert view.state == EXITED and view.final and view.error() is None
    res = ckpt("status", "ended", "--wait")
    assert res.code == 0 and "ended on its own" in res.out


def test_wait_for_follows_a_delivery_until_it_ends(records):
    work, updates, ticks = records["live"], [], []

    def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            Status(COMPLETE, 4242, total_bytes=1 << 20, served_bytes=1 << 20, finished=time.time()).write(work)

    (view,) = wait_for([deliveries.read_delivery(work)], on_progress=updates.append, sleep=sleep)
    assert view.state == COMPLETE and len(ticks) == 3 and updates[-1].done == updates[-1].total == 1 << 20


def test_fsck_checks_the_cache_and_clears_finished_deliveries(ckpt, records, private_host):
    cache = porcelain_cache.open_cache(Home(private_host / "home"))
    good = b"a cached chunk"
    desc = Descriptor("application/octet-stream", "sha256:" + __import__("hashlib").sha256(good).hexdigest(), len(good))
    with cache.writing(desc.digest) as w:
        w.write(good)
        w.commit(desc.media_type, expected=desc.digest)
    bad = cache.path("sha256:" + "1" * 64)
    bad.write_bytes(b"not what its name says")
    (private_host / "home" / "cache" / "ingest" / "blob-left").write_bytes(b"half")
    res = ckpt("fsck", "--json")
    assert res.code == 8
    report = res.json()
    assert report["problems"] == [{"ref": "cache sha256:" + "1" * 64, "problem": report["problems"][0]["problem"]}]
    assert sorted(Path(p).name for p in report["leftover_workdirs"]) == ["r-bad", "r-done", "r-gone", "r-lost"]
    repaired = ckpt("fsck", "--repair", "--json")
    assert repaired.code == 0, repaired.err
    assert not bad.exists() and cache.has_blob(desc.digest)
    assert not (private_host / "home" / "cache" / "ingest" / "blob-left").exists()
    assert [d.name for d in _lazy_dirs(private_host)] == ["r-live"]  # its supervisor still runs
    assert ckpt("fsck").code == 0


# -- the cache ------------------------------------------------------------------------------------------------


def _put(cache: ChunkCache, data: bytes) -> Descriptor:
    import hashlib

    desc = Descriptor("application/octet-stream", "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    with cache.writing(desc.digest) as w:
        w.write(data)
        w.commit(desc.media_type, expected=desc.digest)
    return desc


def test_the_cache_evicts_least_recently_used_blobs_but_never_recent_ones(tmp_path):
    cache = ChunkCache(tmp_path / "cache", limit=250)
    old, used, newer = (_put(cache, bytes([i]) * 100) for i in range(3))
    now = time.time()
    for desc, age in ((old, 5000), (used, 4000), (newer, 3000)):
        os.utime(cache.path(desc.digest), (now - age, now - age))
    cache.read_blob(used)  # used now: the most recent
    assert cache.trim(now=time.time()) == 100
    assert not cache.has_blob(old.digest) and cache.has_blob(used.digest) and cache.has_blob(newer.digest)
    assert cache.usage().bytes == 200
    cache.limit = 0
    assert cache.trim(now=time.time()) == 100  # only `newer`: `used` was used within RECENT
    assert cache.has_blob(used.digest) is False  # a cache whose limit is 0 holds nothing
    assert ChunkCache(tmp_path / "cache", 1).has_blob(used.digest)
    with pytest.raises(NotFound):
        ChunkCache(tmp_path / "cache", 0).read_blob(used)


def test_blobs_move_between_the_cache_and_the_store_by_hard_links(tmp_path):
    from checkpointer.oci.layout import Layout

    cache, store = ChunkCache(tmp_path / "cache", 1 << 30), Layout(tmp_path / "store", create=True)
    desc = store.put_bytes(b"pages", "application/octet-stream")
    assert cache.adopt(store.blob_path(desc.digest), desc.digest) and cache.adopt(store.blob_path(desc.digest),
                                                                                    desc.digest)
    assert os.stat(cache.path(desc.digest)).st_ino == os.stat(store.blob_path(desc.digest)).st_ino
    other = Layout(tmp_path / "other", create=True)
    assert cache.lend(desc.digest, other) and other.read_blob(desc) == b"pages"
    assert not cache.lend("sha256:" + "2" * 64, other)
    assert not ChunkCache(tmp_path / "off", 0).adopt(store.blob_path(desc.digest), desc.digest)


def test_cache_size_settings(monkeypatch, tmp_path):
    assert porcelain_cache.parse_size("10G") == 10 << 30 and porcelain_cache.parse_size("512m") == 512 << 20
    assert porcelain_cache.parse_size("1.5GiB") == 3 << 29 and porcelain_cache.parse_size("4096") == 4096
    with pytest.raises(UsageError):
        porcelain_cache.parse_size("lots")
    home = Home(tmp_path / "h")
    monkeypatch.setenv("CKPT_CACHE_SIZE", "2G")
    assert porcelain_cache.cache_limit(home) == 2 << 30
    monkeypatch.delenv("CKPT_CACHE_SIZE")
    assert porcelain_cache.DEFAULT_MIN <= porcelain_cache.cache_limit(home) <= porcelain_cache.DEFAULT_MAX
    assert porcelain_cache.check_cache(home) is None and porcelain_cache.trim_cache(home) == 0
    assert lazy_cache.RECENT >= 60


def test_an_interrupted_cache_write_is_a_leftover_until_its_writer_is_gone(tmp_path):
    cache = ChunkCache(tmp_path / "cache", 1 << 30)
    with cache.writing() as writer:
        writer.write(b"half a blob")
        assert cache.check().leftovers == ()  # its writer holds it
        assert cache.check(repair=True).removed_bytes == 0
    subprocess.run(["true"], check=True)
    assert cache.check() .leftovers == ()  # aborted: removed by the writer itself
