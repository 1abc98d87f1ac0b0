"""A push to a repository the registry does not have yet asks once (its tag list), not once per
blob; a push to a repository that exists still asks per blob, and sends only what is missing."""
from __future__ import annotations

import pytest

from checkpointer.reference import RegistryRef
from checkpointer.registry import push
from registry_helpers import client_for, make_artifact


@pytest.mark.parametrize("server", ["registry_none", "registry_token"])
def test_blob_checks_are_skipped_only_for_a_new_repository(server, request, tmp_path):
    reg_server = request.getfixturevalue(server)
    first = make_artifact(tmp_path / "first", seed=b"one")
    dest = RegistryRef(reg_server.host, "fresh/repo", "v1")
    with client_for(reg_server) as reg:
        push(first.layout, first.desc, dest, registry=reg)
        heads = [p for m, p in reg.requests_sent if m == "HEAD"]
        assert heads == [] and ("GET", "/v2/fresh/repo/tags/list") in reg.requests_sent
        assert {d for _, d in reg.uploaded} == {b.digest for b in first.manifest.blobs()}
    with client_for(reg_server) as reg:  # another process: the repository exists now
        push(first.layout, first.desc, RegistryRef(reg_server.host, "fresh/repo", "v2"), registry=reg)
        blobs = {b.digest for b in first.manifest.blobs()}
        heads = {p.rsplit("/", 1)[-1] for m, p in reg.requests_sent if m == "HEAD" and "/blobs/" in p}
        assert heads == blobs
        assert not reg.uploaded, "a blob the repository had was sent again"
