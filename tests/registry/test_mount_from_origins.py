"""A checkpoint pushed to a second repository of the same registry is mounted there from the first,
not uploaded again (the store remembers where its blobs went)."""
from __future__ import annotations

from checkpointer.porcelain import origins
from checkpointer.porcelain.places import RegistryOptions
from checkpointer.porcelain.places import registry as locations
from checkpointer.porcelain.places.registry import publish
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, pull
from registry_helpers import make_artifact


def test_second_repository_mounts_instead_of_uploading(registry_none, tmp_path):
    art = make_artifact(tmp_path / "store", big=300_000)
    first = RegistryRef(registry_none.host, "team/first", "v1")
    second = RegistryRef(registry_none.host, "team/second", "v1")
    publish(art.layout, art.desc, first, registry=RegistryOptions())
    assert origins.sources(art.layout.root, second) == ("team/first",)

    locations._clients.clear()  # a new process: nothing remembered in memory, only in the store
    publish(art.layout, art.desc, second, registry=RegistryOptions())
    [client] = locations._clients.values()
    sent = client.requests_sent
    assert ("PATCH" not in {m for m, _ in sent}), sent  # no blob bytes went up again
    assert [p for m, p in sent if m == "PUT"] == ["/v2/team/second/manifests/v1"]
    assert any(m == "POST" and p == "/v2/team/second/blobs/uploads/" for m, p in sent)
    with Registry(registry_none.host) as reg:  # and the second repository really has everything
        got = pull(second, type(art.layout)(tmp_path / "check", create=True), registry=reg)
    assert got.digest == art.desc.digest
    locations._clients.clear()


def test_pushes_from_a_scratch_layout_are_remembered_in_the_store(registry_none, tmp_path):
    """A save bound for a registry packs in a scratch layout (tmpfs); the store must still learn
    where the blobs went, or the next push to another repository uploads everything again."""
    art = make_artifact(tmp_path / "scratch", big=300_000)
    store = tmp_path / "store"
    store.mkdir()
    first = RegistryRef(registry_none.host, "team/scratch-first", "v1")
    second = RegistryRef(registry_none.host, "team/scratch-second", "v1")
    publish(art.layout, art.desc, first, registry=RegistryOptions(), store_root=store)
    assert origins.sources(store, second) == ("team/scratch-first",)
    assert origins.sources(art.layout.root, second) == ()
    locations._clients.clear()
