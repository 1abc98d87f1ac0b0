"""The hooks publisher retries by the one retry policy: after each configured delay (a fixed
schedule, taken as it is), only while the failure may pass, and it records every attempt."""
from __future__ import annotations

import shutil

from support.registry_server import RegistryServer

from checkpointer.hooks import publisher
from checkpointer.hooks.job import FAILED, PUBLISHED, PUBLISHING, Job
from checkpointer.hooks.retry import retry
from checkpointer.hooks.settings import HookSettings
from checkpointer.hooks.spool import Spool
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest
from checkpointer.registry import Credentials, Registry


def _packed_job(spool: Spool, destination: str) -> Job:
    """A job whose checkpoint is packed already (the publisher only has to deliver it)."""
    spool.ensure()
    job_id = "job-" + destination.replace("/", "_").replace(":", "_")
    spool.job_dir(job_id).mkdir(mode=0o700)
    layout = Layout(spool.job_dir(job_id) / "layout", create=True)
    config = layout.put_bytes(b'{"created":"2026-01-01T00:00:00Z"}', mt.CHECKPOINT_CONFIG)
    layer = layout.put_bytes(b"pages", mt.LAYER_TAR)
    desc = layout.put_manifest(Manifest(config, (layer,), artifact_type=mt.CHECKPOINT_ARTIFACT))
    job = Job(id=job_id, state=PUBLISHING, destination=destination, container_id="c1", digest=desc.digest)
    spool.save(job)
    return job


def test_a_passing_failure_is_retried_after_the_configured_delay(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))  # no stored credentials are read
    certs = tmp_path / "certs"
    certs.mkdir()
    with RegistryServer(tmp_path / "reg", auth="none", tls=True) as server:
        spool = Spool(tmp_path / "spool")
        dest = f"{server.host}/hooks/web:v1"
        job = _packed_job(spool, dest)
        settings = HookSettings(home=tmp_path / "home", spool=spool.root, ca_dir=certs)
        slept: list[float] = []

        def operator_fixes_the_ca(seconds: float) -> None:
            # the first attempt failed (no CA to trust yet): during the pause the CA arrives
            slept.append(seconds)
            shutil.copy(server.ca_cert, certs / "ca.crt")

        done = publisher.run(spool, job.id, settings, delays=(5.0, 30.0, 120.0), sleep=operator_fixes_the_ca)
        assert slept == [5.0]
        assert done.state == PUBLISHED and done.attempts == 2
        events = [event for _, event in done.history]
        assert any(e.startswith("attempt 1 failed:") and e.endswith("next in 5 s") for e in events), events
        with Registry(server.host, ca_dir=certs, credentials=Credentials()) as reg:
            got = reg.request("GET", "/v2/hooks/web/manifests/v1", scopes=(), what="reading the tag",
                              headers={"Accept": mt.OCI_MANIFEST})
            assert got.headers["Docker-Content-Digest"] == done.digest


def test_retries_stop_when_the_delays_are_spent(tmp_path):
    spool = Spool(tmp_path / "spool")
    empty = tmp_path / "certs"
    empty.mkdir()
    job = _packed_job(spool, "127.0.0.1:9/hooks/web:v1")
    settings = HookSettings(home=tmp_path / "home", spool=spool.root, ca_dir=empty)
    slept: list[float] = []
    done = publisher.run(spool, job.id, settings, delays=(1.0, 2.0), sleep=slept.append)
    assert slept == [1.0, 2.0]
    assert done.state == FAILED and done.attempts == 3
    assert "no *.crt file" in done.error and f"ckpt hooks retry {job.id}" in done.hint
    assert spool.load(job.id) == done


def test_a_failure_that_cannot_pass_is_not_retried(tmp_path):
    spool = Spool(tmp_path / "spool")
    (tmp_path / "a-file").write_bytes(b"")
    job = _packed_job(spool, f"oci:{tmp_path / 'a-file' / 'layout'}:v1")  # a file where a directory must be
    settings = HookSettings(home=tmp_path / "home", spool=spool.root)
    slept: list[float] = []
    done = publisher.run(spool, job.id, settings, delays=(1.0, 2.0), sleep=slept.append)
    assert slept == []
    assert done.state == FAILED and done.attempts == 1


def test_ckpt_hooks_retry_tries_once(tmp_path):
    """`ckpt hooks retry` runs in the foreground with no delays: one attempt."""
    spool = Spool(tmp_path / "spool")
    empty = tmp_path / "certs"
    empty.mkdir()
    job = _packed_job(spool, "127.0.0.1:9/hooks/web:v1")
    settings = HookSettings(home=tmp_path / "home", spool=spool.root, ca_dir=empty)
    [outcome] = retry(settings, [job.id])
    assert outcome.job is not None and outcome.job.state == FAILED and outcome.job.attempts == 1
