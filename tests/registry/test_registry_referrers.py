"""Referrers: the tag-schema fallback on docker-registry 2.8.2, and the native API on the fake."""
from __future__ import annotations

import pytest
from registry_helpers import client_for, make_artifact, skopeo_raw

from checkpointer.errors import UsageError
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.digest import hex_of
from checkpointer.oci.model import Index
from checkpointer.registry import list_referrers, push
from checkpointer.reference import RegistryRef

SIG = "application/vnd.ckpt.test.signature.v1"
SBOM = "application/vnd.ckpt.test.sbom.v1"


def _subject_and_referrers(tmp_path):
    subject = make_artifact(tmp_path / "s", big=100)
    sig = make_artifact(tmp_path / "s", big=10, seed=b"sig", subject=subject.desc, artifact_type=SIG)
    sbom = make_artifact(tmp_path / "s", big=10, seed=b"sbom", subject=subject.desc, artifact_type=SBOM)
    return subject, sig, sbom


def test_tag_schema_fallback_on_distribution(registry_none, tmp_path):
    subject, sig, sbom = _subject_and_referrers(tmp_path)
    repo = RegistryRef(registry_none.host, "ckpt/ref", "v1")
    with client_for(registry_none) as reg:
        push(subject.layout, subject.desc, repo, registry=reg)
        ref = repo.with_reference(digest=subject.desc.digest)
        assert list_referrers(ref, registry=reg) == []
        push(sig.layout, sig.desc, repo.with_reference(tag=None), registry=reg)
        push(sbom.layout, sbom.desc, repo.with_reference(tag="sbom"), registry=reg)
        push(sig.layout, sig.desc, repo.with_reference(tag="sig-again"), registry=reg)  # no duplicate entry

        found = list_referrers(ref, registry=reg)
        # a referrer already listed is not written again, so it keeps its place
        assert [d.digest for d in found] == [sig.desc.digest, sbom.desc.digest]
        assert {d.artifact_type for d in found} == {SIG, SBOM}
        assert all(d.media_type == mt.OCI_MANIFEST for d in found)
        only = list_referrers(ref, registry=reg, artifact_type=SIG)
        assert [d.digest for d in only] == [sig.desc.digest] and only[0].size == sig.desc.size
        assert only[0].annotations == {"dev.ckpt.test": "yes"}
        # the registry has no referrers API: the list lives in the sha256-<hex> tag, as an index
        assert ("GET", f"/v2/ckpt/ref/referrers/{subject.desc.digest}") in reg.requests_sent
    tag = "sha256-" + hex_of(subject.desc.digest)
    index = Index.from_bytes(skopeo_raw(registry_none, f"ckpt/ref:{tag}"))
    assert len(index.manifests) == 2


def test_tag_that_is_not_an_index_counts_as_empty(fake_registry, tmp_path):
    subject, sig, _ = _subject_and_referrers(tmp_path)
    repo = RegistryRef(fake_registry.host, "ckpt/ref", "v1")
    with client_for(fake_registry) as reg:
        push(subject.layout, subject.desc, repo, registry=reg)
        # someone pushed a plain manifest under the referrers tag
        push(subject.layout, subject.desc, repo.with_reference(tag="sha256-" + hex_of(subject.desc.digest)),
             registry=reg)
        ref = repo.with_reference(digest=subject.desc.digest)
        assert list_referrers(ref, registry=reg) == []
        push(sig.layout, sig.desc, repo.with_reference(tag=None), registry=reg)
        assert [d.digest for d in list_referrers(ref, registry=reg)] == [sig.desc.digest]


def test_native_referrers_api(tmp_path):
    from fake_registry import FakeRegistry
    subject, sig, sbom = _subject_and_referrers(tmp_path)
    with FakeRegistry(referrers_api=True) as fake, client_for(fake) as reg:
        repo = RegistryRef(fake.host, "ckpt/ref", "v1")
        push(subject.layout, subject.desc, repo, registry=reg)
        push(sig.layout, sig.desc, repo.with_reference(tag=None), registry=reg)
        push(sbom.layout, sbom.desc, repo.with_reference(tag=None), registry=reg)
        # the registry answered OCI-Subject: no tag-schema index was written
        assert not [r for r in fake.seen("PUT") if "/manifests/sha256-" in r.path]
        assert not fake.seen("GET", "/manifests/sha256-")
        ref = repo.with_reference(digest=subject.desc.digest)
        assert {d.digest for d in list_referrers(ref, registry=reg)} == {sig.desc.digest, sbom.desc.digest}
        only = list_referrers(ref, registry=reg, artifact_type=SBOM)
        assert [d.digest for d in only] == [sbom.desc.digest]
        assert fake.seen("GET", "/referrers/")[-1].path.endswith(subject.desc.digest)
        assert not fake.seen("GET", "/manifests/sha256-")


def test_referrers_need_a_digest(fake_registry):
    with pytest.raises(UsageError):
        list_referrers(RegistryRef(fake_registry.host, "ckpt/ref", "v1"))
