"""checkpointer.oci.model: descriptors, manifests and indexes, and their strict JSON parsing."""
from __future__ import annotations

import json
from typing import Any

import pytest

from checkpointer.errors import CorruptData
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.digest import sha256_digest
from checkpointer.oci.model import (MAX_MANIFEST_BYTES, Descriptor, Index, Manifest, empty_config,
                                    media_type_of)

D1 = sha256_digest(b"one")
D2 = sha256_digest(b"two")
D3 = sha256_digest(b"three")


def full_manifest() -> Manifest:
    return Manifest(
        config=Descriptor(mt.CHECKPOINT_CONFIG, D1, 123),
        layers=[Descriptor(mt.LAYER_TAR_ZSTD, D2, 4567, {"dev.ckpt.layer.role": "criu"}),
                Descriptor(mt.LAYER_TAR, D3, 0, {"org.opencontainers.image.title": "rootfs.tar", "é": "ü"})],
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "x": ""},
        artifact_type=mt.CHECKPOINT_ARTIFACT,
        subject=Descriptor(mt.OCI_MANIFEST, D3, 99),
    )


def full_index() -> Index:
    return Index(
        manifests=[
            Descriptor(mt.OCI_MANIFEST, D1, 10, {"org.opencontainers.image.ref.name": "web:v1"},
                       artifact_type=mt.CHECKPOINT_ARTIFACT),
            Descriptor(mt.OCI_MANIFEST, D2, 20, platform={"architecture": "arm64", "os": "linux", "variant": "v8",
                                                           "os.features": ["a", "b"]}),
        ],
        annotations={"k": "v"},
    )


def manifest_json(**override: Any) -> dict[str, Any]:
    obj = full_manifest().to_json()
    for key, value in override.items():
        if value is _DROP:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


_DROP = object()


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# -- round trips -------------------------------------------------------------------------------

def test_manifest_round_trips_byte_identically() -> None:
    manifest = full_manifest()
    data = manifest.to_bytes()
    again = Manifest.from_bytes(data)
    assert again == manifest
    assert again.to_bytes() == data
    assert list(json.loads(data)) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject",
                                      "annotations"]
    assert "é" in data.decode()  # UTF-8, not \\u escapes


def test_minimal_manifest_round_trips() -> None:
    manifest = Manifest(empty_config(), ())
    data = manifest.to_bytes()
    assert json.loads(data) == {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256_digest(b"{}"), "size": 2},
                                "layers": []}
    assert Manifest.from_bytes(data).to_bytes() == data


def test_docker_manifest_keeps_its_media_type() -> None:
    obj = manifest_json(mediaType=mt.DOCKER_MANIFEST)
    assert Manifest.from_bytes(enc(obj)).media_type == mt.DOCKER_MANIFEST
    obj.pop("mediaType")
    assert Manifest.from_bytes(enc(obj)).media_type == mt.OCI_MANIFEST


def test_index_round_trips_byte_identically() -> None:
    index = full_index()
    data = index.to_bytes()
    again = Index.from_bytes(data)
    assert again == index
    assert again.to_bytes() == data
    assert again.manifests[1].platform["os.features"] == ["a", "b"]
    assert Index.from_bytes(Index(()).to_bytes()) == Index(())


def test_descriptor_round_trips() -> None:
    desc = Descriptor(mt.OCI_MANIFEST, D1, 5, {"a": "b"}, artifact_type="x/y", platform={"os": "linux"})
    assert Descriptor.from_json(json.loads(json.dumps(desc.to_json()))) == desc
    assert desc.to_json() == {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 5, "artifactType": "x/y",
                              "platform": {"os": "linux"}, "annotations": {"a": "b"}}
    assert Descriptor(mt.OCI_MANIFEST, D1, 5).to_json() == {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 5}


def test_descriptor_is_immutable_and_with_annotations_merges() -> None:
    source = {"a": "1"}
    desc = Descriptor(mt.LAYER_TAR, D1, 1, source)
    source["a"] = "changed"
    assert desc.annotations["a"] == "1"
    with pytest.raises(TypeError):
        desc.annotations["b"] = "2"  # type: ignore[index]
    merged = desc.with_annotations({"b": "2", "a": "3"})
    assert dict(merged.annotations) == {"a": "3", "b": "2"}
    assert dict(desc.annotations) == {"a": "1"}


def test_descriptor_refuses_bad_values_when_built_in_code() -> None:
    with pytest.raises(CorruptData):
        Descriptor(mt.LAYER_TAR, D1, -1)
    with pytest.raises(CorruptData):
        Descriptor(mt.LAYER_TAR, "sha256:abc", 1)


def test_manifest_descriptor_and_blobs() -> None:
    manifest = full_manifest()
    desc = manifest.descriptor({"n": "v"})
    assert desc.digest == sha256_digest(manifest.to_bytes())
    assert desc.size == len(manifest.to_bytes())
    assert desc.media_type == mt.OCI_MANIFEST
    assert desc.artifact_type == mt.CHECKPOINT_ARTIFACT
    assert dict(desc.annotations) == {"n": "v"}
    assert manifest.blobs() == (manifest.config, *manifest.layers)
    assert Manifest(empty_config(), ()).descriptor().artifact_type == mt.OCI_EMPTY


def test_empty_config() -> None:
    assert empty_config() == Descriptor(mt.OCI_EMPTY, sha256_digest(b"{}"), 2)


# -- rejections --------------------------------------------------------------------------------

def _layer(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"mediaType": mt.LAYER_TAR, "digest": D1, "size": 1}
    for key, value in fields.items():
        if value is _DROP:
            base.pop(key)
        else:
            base[key] = value
    return base


BAD_MANIFESTS: dict[str, bytes] = {
    "not json": b"{",
    "not utf-8": b'{"schemaVersion": 2, "x": "\xff"}',
    "empty": b"",
    "list": b"[]",
    "string": b'"manifest"',
    "number": b"2",
    "null": b"null",
    "schemaVersion 1": enc(manifest_json(schemaVersion=1)),
    "schemaVersion 3": enc(manifest_json(schemaVersion=3)),
    "schemaVersion string": enc(manifest_json(schemaVersion="2")),
    "schemaVersion float": enc(manifest_json(schemaVersion=2.0)),
    "schemaVersion true": enc(manifest_json(schemaVersion=True)),
    "schemaVersion missing": enc(manifest_json(schemaVersion=_DROP)),
    "index media type": enc(manifest_json(mediaType=mt.OCI_INDEX)),
    "foreign media type": enc(manifest_json(mediaType="text/plain")),
    "media type not a string": enc(manifest_json(mediaType=["x"])),
    "layers a dict": enc(manifest_json(layers={"0": _layer()})),
    "layers null": enc(manifest_json(layers=None)),
    "layers missing": enc(manifest_json(layers=_DROP)),
    "layers a string": enc(manifest_json(layers="[]")),
    "layer not an object": enc(manifest_json(layers=["sha256:x"])),
    "config missing": enc(manifest_json(config=_DROP)),
    "config not an object": enc(manifest_json(config=D1)),
    "descriptor without digest": enc(manifest_json(layers=[_layer(digest=_DROP)])),
    "descriptor without size": enc(manifest_json(layers=[_layer(size=_DROP)])),
    "descriptor without mediaType": enc(manifest_json(layers=[_layer(mediaType=_DROP)])),
    "digest not a string": enc(manifest_json(layers=[_layer(digest=1)])),
    "malformed digest": enc(manifest_json(layers=[_layer(digest="sha256:1234")])),
    "digest with newline": enc(manifest_json(layers=[_layer(digest=D1 + "\n")])),
    "negative size": enc(manifest_json(layers=[_layer(size=-1)])),
    "bool size": enc(manifest_json(layers=[_layer(size=True)])),
    "float size": enc(manifest_json(layers=[_layer(size=1.0)])),
    "string size": enc(manifest_json(layers=[_layer(size="1")])),
    "null size": enc(manifest_json(layers=[_layer(size=None)])),
    "annotation int value": enc(manifest_json(annotations={"a": 1})),
    "annotation null value": enc(manifest_json(annotations={"a": None})),
    "annotation list value": enc(manifest_json(annotations={"a": ["b"]})),
    "annotation object value": enc(manifest_json(annotations={"a": {"b": "c"}})),
    "annotations a list": enc(manifest_json(annotations=[["a", "b"]])),
    "annotations a string": enc(manifest_json(annotations="a=b")),
    "layer annotation int value": enc(manifest_json(layers=[_layer(annotations={"a": 1})])),
    "config annotation bool value": enc(manifest_json(config=_layer(annotations={"a": True}))),
    "artifactType not a string": enc(manifest_json(artifactType=1)),
    "layer artifactType not a string": enc(manifest_json(layers=[_layer(artifactType=["x"])])),
    "platform not an object": enc(manifest_json(layers=[_layer(platform="linux/amd64")])),
    "subject not an object": enc(manifest_json(subject="sha256:x")),
    "subject without digest": enc(manifest_json(subject=_layer(digest=_DROP))),
    "too big": json.dumps(manifest_json()).encode() + b" " * MAX_MANIFEST_BYTES,
    "deeply nested": b'{"schemaVersion": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deeply nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_manifest_from_bytes_rejects(case: str) -> None:
    with pytest.raises(CorruptData):
        Manifest.from_bytes(BAD_MANIFESTS[case])


def test_size_limit_is_exact() -> None:
    data = json.dumps(manifest_json()).encode()
    padded = data + b" " * (MAX_MANIFEST_BYTES - len(data))
    assert len(padded) == MAX_MANIFEST_BYTES
    assert Manifest.from_bytes(padded) == full_manifest()
    with pytest.raises(CorruptData, match="more than"):
        Manifest.from_bytes(padded + b" ")


def index_json(**override: Any) -> dict[str, Any]:
    obj = full_index().to_json()
    for key, value in override.items():
        if value is _DROP:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


BAD_INDEXES: dict[str, bytes] = {
    "not json": b"nope",
    "list": b"[]",
    "schemaVersion 1": enc(index_json(schemaVersion=1)),
    "schemaVersion missing": enc(index_json(schemaVersion=_DROP)),
    "manifest media type": enc(index_json(mediaType=mt.OCI_MANIFEST)),
    "manifests not a list": enc(index_json(manifests={})),
    "manifests missing": enc(index_json(manifests=_DROP)),
    "entry without digest": enc(index_json(manifests=[_layer(digest=_DROP)])),
    "entry negative size": enc(index_json(manifests=[_layer(size=-5)])),
    "entry bool size": enc(index_json(manifests=[_layer(size=False)])),
    "entry not an object": enc(index_json(manifests=[None])),
    "annotation int value": enc(index_json(annotations={"a": 1})),
    "too big": b" " * (MAX_MANIFEST_BYTES + 1) + enc(index_json()),
    "deeply nested": b"[" * 200_000,
}


@pytest.mark.parametrize("case", sorted(BAD_INDEXES))
def test_index_from_bytes_rejects(case: str) -> None:
    with pytest.raises(CorruptData):
        Index.from_bytes(BAD_INDEXES[case])


def test_docker_manifest_list_is_an_index() -> None:
    index = Index.from_bytes(enc(index_json(mediaType=mt.DOCKER_MANIFEST_LIST)))
    assert index.media_type == mt.DOCKER_MANIFEST_LIST


def test_platform_keeps_only_well_formed_values() -> None:
    obj = _layer(platform={"os": "linux", "architecture": "amd64", "os.features": ["x"], "bogus": 1,
                           "features": [1, "y"]})
    assert Descriptor.from_json(obj).platform == {"os": "linux", "architecture": "amd64", "os.features": ["x"]}


# -- media_type_of -----------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (full_manifest().to_bytes(), mt.OCI_MANIFEST),
    (full_index().to_bytes(), mt.OCI_INDEX),
    (enc({"mediaType": mt.DOCKER_MANIFEST_LIST}), mt.DOCKER_MANIFEST_LIST),
    (enc({"schemaVersion": 2, "manifests": []}), mt.OCI_INDEX),
    (enc({"schemaVersion": 2, "layers": []}), mt.OCI_MANIFEST),
    (enc({"mediaType": 5, "layers": []}), mt.OCI_MANIFEST),
    (enc({"schemaVersion": 2}), None),
    (b"[]", None),
    (b"not json", None),
    (b"\xff\xfe", None),
    (b"", None),
    (b"[" * 100_000, None),
])
def test_media_type_of(data: bytes, expected: str | None) -> None:
    assert media_type_of(data) == expected
