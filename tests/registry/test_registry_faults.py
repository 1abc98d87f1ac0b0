"""Fault injection with the fake registry: retries, Retry-After, resume, corruption, error bodies."""
from __future__ import annotations

import json
import socket

import pytest
from registry_helpers import FAST_RETRY, STREAM_THRESHOLD, client_for, make_artifact

from checkpointer.errors import AuthError, CorruptData, RegistryError, Unreachable
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.registry import Registry, RetryPolicy, pull, push
from checkpointer.reference import RegistryRef


def _serve(fake, art, repo="ckpt/x", tag="v1") -> RegistryRef:
    """Put `art` into the fake registry directly (not through push)."""
    for data in art.payloads.values():
        fake.put_blob(data)
    fake.put_manifest(repo, tag, art.layout.read_blob(art.desc), mt.OCI_MANIFEST)
    return RegistryRef(fake.host, repo, tag)


def _recording_sleep(reg: Registry) -> list[float]:
    slept: list[float] = []
    reg.transport.sleep = slept.append
    return slept


def _nothing_stored(dst: Layout, art) -> bool:
    return (not any(dst.has_blob(d) for d in art.payloads)
            and not dst.has_blob(art.desc.digest)
            and list((dst.root / "ingest").iterdir()) == [])


def test_503_burst_then_success(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.script("GET", r"/manifests/v1$", 503, count=3)
    fake_registry.script("GET", r"/blobs/", 502, count=2)
    with client_for(fake_registry) as reg:
        slept = _recording_sleep(reg)
        got = pull(src, Layout(tmp_path / "dst", create=True), registry=reg)
    assert got.digest == artifact.desc.digest
    assert len(fake_registry.seen("GET", r"/manifests/v1$")) == 4
    assert len(slept) == 5 and all(0 <= s <= FAST_RETRY.cap for s in slept)


def test_503_forever_gives_registry_error(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.script("GET", r"/manifests/", 503, count=100,
                         body=b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
    with client_for(fake_registry, retry=RetryPolicy(tries=3, base=0.001)) as reg:
        _recording_sleep(reg)
        with pytest.raises(RegistryError) as exc:
            pull(src, Layout(tmp_path / "dst", create=True), registry=reg)
    assert exc.value.status == 503 and exc.value.codes == ("UNAVAILABLE",)
    assert "try later" in str(exc.value)
    assert len(fake_registry.seen("GET", r"/manifests/")) == 3


def test_429_honours_retry_after(fake_registry, artifact):
    fake_registry.script("POST", r"/blobs/uploads/$", 429, count=1, headers={"Retry-After": "2"},
                         body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
    dest = RegistryRef(fake_registry.host, "ckpt/x", "v1")
    with client_for(fake_registry) as reg:
        slept = _recording_sleep(reg)
        push(artifact.layout, artifact.desc, dest, registry=reg, jobs=1)
    assert slept == [2.0]
    assert fake_registry.manifests[("ckpt/x", "v1")][0] == artifact.layout.read_blob(artifact.desc)


def test_429_exhausted_has_hint(fake_registry, artifact):
    fake_registry.script("HEAD", r"/blobs/", 429, count=100, headers={"Retry-After": "0"})
    dest = RegistryRef(fake_registry.host, "ckpt/x", "v1")
    with client_for(fake_registry) as reg:
        _recording_sleep(reg)
        with pytest.raises(RegistryError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg)
    assert exc.value.status == 429 and "rate-limiting" in exc.value.hint
    assert ("ckpt/x", "v1") not in fake_registry.manifests


def test_connection_cut_mid_blob_resumes_with_range(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    big = artifact.manifest.layers[1]
    fake_registry.cut_blob[big.digest] = 100_000
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        got = pull(src, dst, registry=reg)
    assert got.digest == artifact.desc.digest
    assert dst.blob_path(big.digest).read_bytes() == artifact.payloads[big.digest]
    gets = fake_registry.seen("GET", big.digest)
    assert len(gets) == 2 and "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == "bytes=100000-"


def test_416_with_bogus_length_starts_over(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    big = artifact.manifest.layers[1]
    fake_registry.cut_blob[big.digest] = 50_000
    fake_registry.range_416.add(big.digest)
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        pull(src, dst, registry=reg)
    assert dst.blob_path(big.digest).read_bytes() == artifact.payloads[big.digest]
    gets = fake_registry.seen("GET", big.digest)
    assert [g.headers.get("Range") for g in gets] == [None, "bytes=50000-", None]
    assert list((dst.root / "ingest").iterdir()) == []


def test_blob_not_matching_its_digest_is_refused(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.corrupt_blob.add(artifact.manifest.layers[1].digest)
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        with pytest.raises(CorruptData, match="digest mismatch"):
            pull(src, dst, registry=reg, jobs=1)
    assert not dst.has_blob(artifact.manifest.layers[1].digest)
    assert not dst.has_blob(artifact.desc.digest)
    assert list((dst.root / "ingest").iterdir()) == []


def test_truncated_manifest_is_refused(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.truncate_manifest.add("v1")
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        with pytest.raises(CorruptData):
            pull(src, dst, registry=reg)
    assert _nothing_stored(dst, artifact)


def test_manifest_not_matching_pinned_digest(fake_registry, artifact, tmp_path):
    other = make_artifact(tmp_path / "other", big=10)
    src = _serve(fake_registry, artifact)
    # the registry serves a different manifest under the digest we ask for
    fake_registry.manifests[("ckpt/x", other.desc.digest)] = (artifact.layout.read_blob(artifact.desc), mt.OCI_MANIFEST)
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        with pytest.raises(CorruptData, match="does not match its digest"):
            pull(src.with_reference(digest=other.desc.digest), dst, registry=reg)
    assert _nothing_stored(dst, artifact)


def test_error_body_is_reported(fake_registry, artifact):
    fake_registry.script("PUT", r"/manifests/", 400,
                         body=b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}')
    dest = RegistryRef(fake_registry.host, "ckpt/x", "v1")
    with client_for(fake_registry) as reg:
        with pytest.raises(RegistryError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg)
    assert exc.value.status == 400 and exc.value.codes == ("MANIFEST_INVALID",)
    assert "MANIFEST_INVALID: manifest invalid" in str(exc.value)
    assert exc.value.hint and "OCI artifacts" in exc.value.hint


def test_denied_is_auth_error(fake_registry, artifact):
    fake_registry.script("HEAD", r"/blobs/", 403, count=10)
    fake_registry.script("POST", r"/blobs/uploads/", 403, count=10,
                         body=b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}')
    dest = RegistryRef(fake_registry.host, "ckpt/x", "v1")
    with client_for(fake_registry) as reg:
        with pytest.raises(AuthError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg, jobs=1)
    assert exc.value.status == 403


def test_lost_upload_session_restarts_from_post(fake_registry, artifact):
    fake_registry.script("PATCH", r"/blobs/uploads/", 404, count=1,
                         body=b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown"}]}')
    dest = RegistryRef(fake_registry.host, "ckpt/x", "v1")
    with client_for(fake_registry) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD)
    assert len(fake_registry.seen("PATCH")) == 2
    big = artifact.manifest.layers[1]
    assert fake_registry.blobs[big.digest] == artifact.payloads[big.digest]


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Registry(f"127.0.0.1:{port}", retry=RetryPolicy(tries=2, base=0.001)) as reg:
        with pytest.raises(Unreachable) as exc:
            reg.ping()
    assert "nothing listens" in exc.value.hint


def test_plain_http_refused_for_remote_hosts():
    with Registry("registry.invalid", retry=RetryPolicy(tries=1)) as reg:
        assert reg._schemes() == ["https"]
    with Registry("registry.invalid", insecure=True) as reg:
        assert reg._schemes() == ["https", "http"]
    for host in ("localhost:5000", "127.0.0.5:80", "[::1]:5000"):
        with Registry(host) as reg:
            assert reg._schemes() == ["https", "http"]


def test_parallel_pull_reports_progress(fake_registry, tmp_path):
    art = make_artifact(tmp_path / "src", big=2_000_000)
    src = _serve(fake_registry, art)
    updates = []
    with client_for(fake_registry) as reg:
        pull(src, Layout(tmp_path / "dst", create=True), registry=reg, jobs=4, on_progress=updates.append)
    total = sum(len(d) for d in art.payloads.values())
    assert updates and all(u.phase == "pull" and u.total == total for u in updates)
    assert updates[-1].done == total
    assert json.loads(art.layout.read_blob(art.desc))["artifactType"] == mt.CHECKPOINT_ARTIFACT
