"""Push and pull against the real docker-registry (distribution 2.8.2): no auth, Basic, token+TLS."""
from __future__ import annotations

import json
import pytest
from registry_helpers import STREAM_THRESHOLD, client_for, make_artifact, skopeo_raw

from checkpointer.errors import AuthError, CorruptData, NotFound, Unreachable
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor, Index
from checkpointer.registry import Credentials, Registry, RegistryNotFound, pull, push
from checkpointer.reference import RegistryRef


def _assert_same_blobs(art, dst: Layout, desc: Descriptor) -> None:
    assert dst.read_blob(desc) == art.layout.read_blob(art.desc)
    for digest, data in art.payloads.items():
        assert dst.blob_path(digest).read_bytes() == data


def test_push_pull_roundtrip_no_auth(registry_none, artifact, tmp_path):
    dest = RegistryRef(registry_none.host, "ckpt/roundtrip", "v1")
    updates = []
    with client_for(registry_none) as reg:
        pushed = push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD,
                      on_progress=updates.append)
        assert pushed.digest == artifact.desc.digest
        sent = list(reg.requests_sent)
    # the big layer was streamed with one PATCH; the small blobs went as POST + PUT with the body
    assert [m for m, _ in sent].count("PATCH") == 1
    assert [m for m, _ in sent].count("POST") == 3
    # the manifest went last
    assert sent[-1] == ("PUT", "/v2/ckpt/roundtrip/manifests/v1")
    total = sum(len(d) for d in artifact.payloads.values())
    assert updates[-1].phase == "push" and updates[-1].total == total
    assert max(u.done for u in updates) == total

    assert skopeo_raw(registry_none, "ckpt/roundtrip:v1") == artifact.layout.read_blob(artifact.desc)

    dst = Layout(tmp_path / "dst", create=True)
    with client_for(registry_none) as reg:
        got = pull(dest, dst, registry=reg)
    assert got.digest == artifact.desc.digest and got.size == artifact.desc.size
    assert got.artifact_type == mt.CHECKPOINT_ARTIFACT
    _assert_same_blobs(artifact, dst, got)
    assert list((dst.root / "ingest").iterdir()) == []
    dst.tag("pulled", got)  # every blob is there, so the caller can tag it


def test_pull_by_digest_and_missing_tag(registry_none, artifact, tmp_path):
    dest = RegistryRef(registry_none.host, "ckpt/bydigest", "v1")
    with client_for(registry_none) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg)
        dst = Layout(tmp_path / "dst", create=True)
        got = pull(dest.with_reference(digest=artifact.desc.digest), dst, registry=reg)
        assert got.digest == artifact.desc.digest
        with pytest.raises(NotFound) as exc:
            pull(dest.with_reference(tag="nope"), dst, registry=reg)
    assert isinstance(exc.value, RegistryNotFound)
    assert exc.value.codes == ("MANIFEST_UNKNOWN",) and exc.value.status == 404
    assert "MANIFEST_UNKNOWN" in str(exc.value)


def test_second_push_skips_existing_blobs(registry_none, artifact):
    dest = RegistryRef(registry_none.host, "ckpt/skip", "v1")
    with client_for(registry_none) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD)
        reg.requests_sent.clear()
        # The same client remembers what it uploaded: only the manifest goes again.
        push(artifact.layout, artifact.desc, dest.with_reference(tag="v2"), registry=reg)
        assert reg.requests_sent == [("PUT", "/v2/ckpt/skip/manifests/v2")]
    with client_for(registry_none) as reg:  # a new client asks the registry
        push(artifact.layout, artifact.desc, dest.with_reference(tag="v2"), registry=reg)
        methods = [m for m, _ in reg.requests_sent if m != "GET"]
    assert methods.count("HEAD") == 3
    assert "POST" not in methods and "PATCH" not in methods
    assert methods.count("PUT") == 1 and reg.requests_sent[-1] == ("PUT", "/v2/ckpt/skip/manifests/v2")


def test_push_of_damaged_local_blob_leaves_no_tag(registry_none, artifact):
    big = artifact.manifest.layers[1]
    path = artifact.layout.blob_path(big.digest)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    dest = RegistryRef(registry_none.host, "ckpt/damaged", "v1")
    with client_for(registry_none) as reg:
        with pytest.raises(CorruptData):
            push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD)
        assert ("PUT", "/v2/ckpt/damaged/manifests/v1") not in reg.requests_sent
        with pytest.raises(NotFound):
            pull(dest, Layout(artifact.layout.root.parent / "dst", create=True), registry=reg)


def test_index_pull_picks_platform(registry_none, tmp_path):
    amd = make_artifact(tmp_path / "a", big=1000, seed=b"amd")
    arm = make_artifact(tmp_path / "a", big=1000, seed=b"arm")
    index = Index((Descriptor(mt.OCI_MANIFEST, amd.desc.digest, amd.desc.size, platform={"os": "linux", "architecture": "amd64"}),
                   Descriptor(mt.OCI_MANIFEST, arm.desc.digest, arm.desc.size, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})))
    index_desc = amd.layout.put_bytes(index.to_bytes(), mt.OCI_INDEX)
    dest = RegistryRef(registry_none.host, "ckpt/multi", "v1")
    with client_for(registry_none) as reg:
        push(amd.layout, index_desc, dest, registry=reg)
        got = pull(dest, Layout(tmp_path / "d1", create=True), registry=reg, platform="linux/arm64")
        assert got.digest == arm.desc.digest
        got = pull(dest, Layout(tmp_path / "d2", create=True), registry=reg, platform="linux/amd64")
        assert got.digest == amd.desc.digest
        with pytest.raises(NotFound, match="linux/amd64, linux/arm64/v8"):
            pull(dest, Layout(tmp_path / "d3", create=True), registry=reg, platform="linux/s390x")
    assert json.loads(skopeo_raw(registry_none, "ckpt/multi:v1"))["mediaType"] == mt.OCI_INDEX


# -- Basic auth ----------------------------------------------------------------------------------

def test_basic_auth_push_pull(registry_basic, artifact, tmp_path):
    dest = RegistryRef(registry_basic.host, "ckpt/basic", "v1")
    with client_for(registry_basic) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD)
        assert reg.auth.scheme == "basic"
        got = pull(dest, Layout(tmp_path / "dst", create=True), registry=reg)
    assert got.digest == artifact.desc.digest
    assert skopeo_raw(registry_basic, "ckpt/basic:v1") == artifact.layout.read_blob(artifact.desc)


def test_basic_auth_wrong_password_and_anonymous(registry_basic, artifact):
    dest = RegistryRef(registry_basic.host, "ckpt/basic", "v1")
    with client_for(registry_basic, credentials=Credentials(registry_basic.username, "wrong")) as reg:
        with pytest.raises(AuthError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg)
    assert exc.value.status == 401 and "UNAUTHORIZED" in exc.value.codes
    assert f"ckpt login {registry_basic.host}" in exc.value.hint
    with client_for(registry_basic, credentials=Credentials()) as reg:
        with pytest.raises(AuthError, match="requires credentials"):
            push(artifact.layout, artifact.desc, dest, registry=reg)


# -- token auth over TLS -------------------------------------------------------------------------

def test_token_auth_over_tls(registry_token, artifact, tmp_path):
    dest = RegistryRef(registry_token.host, "ckpt/token", "v1")
    tokens = registry_token.token_server.requests
    with client_for(registry_token) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg, stream_threshold=STREAM_THRESHOLD)
        assert reg.base_url.startswith("https://")
        assert reg.auth.scheme == "bearer"
        # one token for the whole parallel push, asked with Basic credentials for push+pull
        assert len(tokens) == 1
        assert tokens[0]["user"] == registry_token.username
        assert tokens[0]["scopes"] == ["repository:ckpt/token:pull,push"]
        got = pull(dest, Layout(tmp_path / "dst", create=True), registry=reg)
        assert len(tokens) == 2 and tokens[1]["scopes"] == ["repository:ckpt/token:pull"]
    _assert_same_blobs(artifact, Layout(tmp_path / "dst"), got)
    assert skopeo_raw(registry_token, "ckpt/token:v1") == artifact.layout.read_blob(artifact.desc)


def test_token_refreshed_when_expired_or_refused(registry_token, artifact, tmp_path):
    dest = RegistryRef(registry_token.host, "ckpt/token", "v1")
    with client_for(registry_token) as reg:
        push(artifact.layout, artifact.desc, dest, registry=reg)
        fetched = reg.auth.tokens_fetched
        key = frozenset({"repository:ckpt/token:pull,push"})
        # expired: the cache says so, a new token is fetched before sending
        token, _ = reg.auth._tokens[key]
        reg.auth._tokens[key] = (token, 0.0)
        push(artifact.layout, artifact.desc, dest, registry=reg)
        assert reg.auth.tokens_fetched == fetched + 1
        # refused: the registry answers 401 to a token it doesn't accept; one new token, then success
        reg.auth._tokens[key] = ("not-a-valid-token", float("inf"))
        push(artifact.layout, artifact.desc, dest, registry=reg)
        assert reg.auth.tokens_fetched == fetched + 2
        assert reg.auth._tokens[key][0] != "not-a-valid-token"


def test_token_auth_wrong_password(registry_token, artifact):
    dest = RegistryRef(registry_token.host, "ckpt/token", "v1")
    with client_for(registry_token, credentials=Credentials(registry_token.username, "bad")) as reg:
        with pytest.raises(AuthError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg)
    assert f"ckpt login {registry_token.host}" in exc.value.hint
    assert registry_token.token_server.requests[-1]["user"] is None  # the token server refused


def test_token_auth_anonymous_has_no_access(registry_token, artifact):
    dest = RegistryRef(registry_token.host, "ckpt/token", "v1")
    with client_for(registry_token, credentials=Credentials()) as reg:
        with pytest.raises(AuthError) as exc:
            push(artifact.layout, artifact.desc, dest, registry=reg)
    assert exc.value.status == 401


def test_tls_untrusted_is_unreachable_with_hint(registry_token):
    with Registry(registry_token.host, credentials=Credentials()) as reg:  # no ca_dir: the test CA is unknown
        with pytest.raises(Unreachable) as exc:
            reg.ping()
    assert "certificate" in exc.value.hint and "--ca-dir" in exc.value.hint


def test_insecure_skips_verification(registry_token):
    with Registry(registry_token.host, insecure=True,
                  credentials=Credentials(registry_token.username, registry_token.password)) as reg:
        reg.ping()
        assert reg.base_url.startswith("https://")


def test_cross_repo_mount(registry_token, artifact, tmp_path):
    src = RegistryRef(registry_token.host, "ckpt/mount-src", "v1")
    dst = RegistryRef(registry_token.host, "ckpt/mount-dst", "v1")
    with client_for(registry_token) as reg:
        push(artifact.layout, artifact.desc, src, registry=reg, stream_threshold=STREAM_THRESHOLD)
        reg.requests_sent.clear()
        push(artifact.layout, artifact.desc, dst, registry=reg, stream_threshold=STREAM_THRESHOLD,
             mount_from=["ckpt/mount-src"])
        methods = [m for m, _ in reg.requests_sent]
        got = pull(dst, Layout(tmp_path / "dst", create=True), registry=reg)
    assert methods.count("POST") == 3 and "PATCH" not in methods and methods.count("PUT") == 1
    # the token asked for covers both repositories
    assert any(sorted(r["scopes"]) == ["repository:ckpt/mount-dst:pull,push", "repository:ckpt/mount-src:pull"]
               for r in registry_token.token_server.requests)
    assert got.digest == artifact.desc.digest
