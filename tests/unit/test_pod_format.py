"""The pod checkpoint format (format/pod.py, docs/format.md section 9): the pod config read back as
written and refused when it does not make sense, the index written, recognised, tagged and read,
and a single-container reader's refusal."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from checkpointer.errors import CorruptData, NotFound, UsageError
from checkpointer.format import pod as podfmt
from checkpointer.format.config import CheckpointConfig
from checkpointer.host import HostInfo
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.fsck import fsck
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor, Index, Manifest

HOST = HostInfo(arch="amd64", kernel="6.18", cgroup_version=1, cpu_flags=())
SHARED = {"network": "sandbox", "ipc": "sandbox", "uts": "sandbox", "pid": "own", "mount": "own"}
OWNS = {"network": "own", "ipc": "own", "uts": "own", "pid": "own", "mount": "own"}


@pytest.fixture
def store(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "store", create=True)


def member_checkpoint(layout: Layout, name: str, rootfs: bytes = b"the same rootfs") -> Descriptor:
    config = CheckpointConfig(engine="runc", runtime="runc", runtime_version="1.1.5", criu_version="4.2.1",
                              host=HOST, container_id=f"web-{name}", container_name=f"web-{name}",
                              created="2026-12-01T00:00:00Z")
    layers = [layout.put_bytes(f"criu of {name}".encode(), mt.LAYER_TAR, {"dev.ckpt.layer.role": "criu"}),
              layout.put_bytes(rootfs, mt.LAYER_TAR, {"dev.ckpt.layer.role": "rootfs"})]
    manifest = Manifest(layout.put_bytes(config.to_bytes(), mt.CHECKPOINT_CONFIG), layers,
                        artifact_type=mt.CHECKPOINT_ARTIFACT)
    return layout.put_manifest(manifest)


def pod_config(layout: Layout | None = None, **changes: object) -> podfmt.PodConfig:
    members = (podfmt.PodMember("sandbox", "web-sandbox", OWNS), podfmt.PodMember("server", "web-server", SHARED),
               podfmt.PodMember("client", "web-client", SHARED))
    if layout is not None:
        members = tuple(replace(m, manifest=member_checkpoint(layout, m.name)) for m in members)
    fields = {"engine": "runc", "pod": podfmt.PodIdentity("web", "web-sandbox"), "members": members,
              "created": "2026-12-01T00:00:00Z", "sandbox": "sandbox", **changes}
    return podfmt.PodConfig(**fields)  # type: ignore[arg-type]


def test_config_reads_back_as_written(store: Layout) -> None:
    config = pod_config(store, annotations={"team": "a"})
    assert config.restore_order == ("sandbox", "server", "client")
    again = podfmt.PodConfig.from_bytes(config.to_bytes())
    assert again == config
    assert again.member("client").joins() == {"network": "sandbox", "ipc": "sandbox", "uts": "sandbox"}


@pytest.mark.parametrize("change, problem", [
    (lambda o: o["members"][1].update(name="sandbox"), "same name"),
    (lambda o: o["members"][1]["namespaces"].update(network="nobody"), "no other member"),
    (lambda o: o["members"][1]["namespaces"].update(network="server"), "no other member"),
    (lambda o: o["members"][1]["namespaces"].update(bogus="own"), "unknown namespace type"),
    (lambda o: o["members"][0]["namespaces"].update(ipc="client"), "cycle"),
    (lambda o: o.update(restoreOrder=["server", "sandbox", "client"]), "comes before"),
    (lambda o: o.update(restoreOrder=["sandbox", "server"]), "every member exactly once"),
    (lambda o: o.update(sandbox="ghost"), "none of its members"),
    (lambda o: o.update(schemaVersion=2), "schemaVersion"),
    (lambda o: o["members"][1].update(name="../x"), "is not"),
    (lambda o: o["members"][1].update(id="../../victim"), "container id"),  # restored under it: a bundle path
    (lambda o: o["members"][0].update(id=".."), "container id"),
    (lambda o: o.update(members=[]), "malformed"),
    (lambda o: o["members"][2]["manifest"].update(size="12"), "negative"),
    (lambda o: o.update(networkLock="maybe"), "networkLock"),
])
def test_config_that_makes_no_sense_is_refused(store: Layout, change, problem: str) -> None:  # noqa: ANN001
    obj = json.loads(pod_config(store).to_bytes())
    change(obj)
    with pytest.raises(CorruptData, match=problem):
        podfmt.PodConfig.from_bytes(json.dumps(obj).encode())


def test_pod_index_is_written_recognised_tagged_and_read(store: Layout) -> None:
    config = pod_config(store)
    desc = podfmt.write_pod(store, config)
    assert desc.media_type == mt.OCI_INDEX and desc.artifact_type == podfmt.POD_ARTIFACT
    index = Index.from_bytes(store.read_blob(desc))
    assert index.artifact_type == podfmt.POD_ARTIFACT and podfmt.is_pod_index(index)
    assert index.annotations[podfmt.POD_NAME] == "web" and podfmt.POD_UID not in index.annotations
    roles = [(e.annotations[podfmt.ROLE], e.annotations.get(podfmt.MEMBER)) for e in index.manifests]
    assert roles == [("pod", None), ("member", "sandbox"), ("member", "server"), ("member", "client")]
    # The same rootfs in three members is one blob.
    blobs = {b.digest for e in index.manifests[1:] for b in store.read_manifest(e).blobs()}
    assert len(blobs) == 3 + 3 + 1
    store.tag("web:v1", desc)
    assert fsck(store).ok and store.resolve("web:v1").digest == desc.digest
    opened = podfmt.open_pod(store, desc)
    assert opened.config == config and list(opened.checkpoints) == ["sandbox", "server", "client"]
    assert opened.checkpoints["client"].config.container_id == "web-client"
    assert opened.engine_layers(store) == ()
    # Without the index's artifactType (skopeo 1.9 drops it), the entries' role still says pod.
    assert podfmt.is_pod_index(replace(index, artifact_type=None))
    with pytest.raises(UsageError, match="pod checkpoint of 3 containers"):
        podfmt.refuse_pod(index, "web:v1")


def test_tagging_an_index_checks_every_blob_under_it(store: Layout) -> None:
    config = pod_config(store)
    desc = podfmt.write_pod(store, config)
    client = store.read_manifest(config.member("client").manifest)
    store.blob_path(client.layers[0].digest).unlink()
    with pytest.raises(CorruptData, match="missing"):
        store.tag("web:v1", desc)
    with pytest.raises(NotFound):
        store.tag("web:v1", replace(desc, digest="sha256:" + "0" * 64))
    assert store.refs() == []


def test_member_annotations_name_the_pod(store: Layout) -> None:
    desc = member_checkpoint(store, "server")
    again = podfmt.member_annotations(store, desc, podfmt.PodIdentity("web", "web-sandbox", "default", "u1"))
    annotations = store.read_manifest(again).annotations
    assert annotations[podfmt.POD_NAME] == "web" and annotations[podfmt.POD_NAMESPACE] == "default"


def test_a_pod_whose_index_and_config_disagree_is_refused(store: Layout) -> None:
    config = pod_config(store)
    other = member_checkpoint(store, "stranger")
    bad = replace(config, members=tuple(replace(m, manifest=other) if m.name == "client" else m
                                        for m in config.members))
    desc = podfmt.write_pod(store, config)
    index = Index.from_bytes(store.read_blob(desc))
    pod_manifest = store.read_manifest(index.manifests[0])
    forged = store.put_manifest(replace(pod_manifest, config=store.put_bytes(bad.to_bytes(), podfmt.POD_CONFIG)))
    forged_index = replace(index, manifests=(replace(forged, annotations={podfmt.ROLE: podfmt.ROLE_POD}),
                                             *index.manifests[1:]))
    forged_desc = store.put_bytes(forged_index.to_bytes(), mt.OCI_INDEX)
    with pytest.raises(CorruptData, match="does not hold"):
        podfmt.open_pod(store, forged_desc)
    two_pods = store.put_bytes(replace(index, manifests=(index.manifests[0], *index.manifests)).to_bytes(),
                               mt.OCI_INDEX)
    with pytest.raises(CorruptData, match="exactly one pod manifest"):
        podfmt.open_pod(store, two_pods)
    plain = store.put_bytes(Index(index.manifests[1:]).to_bytes(), mt.OCI_INDEX)
    with pytest.raises(UsageError, match="not a pod"):
        podfmt.open_pod(store, plain)
