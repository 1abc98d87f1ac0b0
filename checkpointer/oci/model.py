"""Typed, immutable OCI descriptors, image manifests and indexes, with strict JSON (de)serialisation."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..errors import CorruptData
from . import mediatypes as mt
from .digest import check_digest, sha256_digest

MAX_MANIFEST_BYTES = 4 << 20  # what registries and clients agree on; larger is refused

EMPTY_CONFIG_DATA = b"{}"


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CorruptData(f"{what}: annotations must map strings to strings")
    return value


def _platform(value: dict[str, Any]) -> dict[str, Any]:
    """The string fields of a platform, and its lists of strings (`os.features`, `features`)."""
    return {k: v for k, v in value.items() if isinstance(v, str)
            or isinstance(v, list) and all(isinstance(item, str) for item in v)}


def _loads(data: bytes) -> Any:
    """json.loads; raises ValueError for anything that is not a JSON document, including one
    nested so deep that the decoder runs out of stack (RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _require(obj: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise CorruptData(f"{what}: field {key!r} is missing or not a {kind.__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_digest(self.digest)
        if self.size < 0:
            raise CorruptData(f"descriptor {self.digest} has a negative size")
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, obj: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise CorruptData(f"{what} is not a JSON object")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise CorruptData(f"{what}: platform is not an object")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise CorruptData(f"{what}: artifactType is not a string")
        return cls(
            media_type=_require(obj, "mediaType", str, what),
            digest=check_digest(_require(obj, "digest", str, what)),
            size=_require(obj, "size", int, what),
            annotations=_strings(obj.get("annotations"), what),
            artifact_type=artifact_type,
            platform=_platform(platform) if platform else None,
        )

    def with_annotations(self, extra: Mapping[str, str]) -> Descriptor:
        return replace(self, annotations={**self.annotations, **extra})


def empty_config() -> Descriptor:
    return Descriptor(mt.OCI_EMPTY, sha256_digest(EMPTY_CONFIG_DATA), len(EMPTY_CONFIG_DATA))


def _parse_json(data: bytes, what: str, max_bytes: int = MAX_MANIFEST_BYTES) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise CorruptData(f"{what} is {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        obj = _loads(data)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptData(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptData(f"{what} is not a JSON object")
    return obj


def _is_schema_2(obj: dict[str, Any]) -> bool:
    version = obj.get("schemaVersion")
    return type(version) is int and version == 2  # not True, not 2.0


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: Descriptor | None = None
    media_type: str = mt.OCI_MANIFEST

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return _encode(self.to_json())

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> Descriptor:
        data = self.to_bytes()
        return Descriptor(self.media_type, sha256_digest(data), len(data), annotations or {},
                          artifact_type=self.artifact_type or self.config.media_type)

    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)

    def total_size(self, own_size: int) -> int:
        """Bytes of this manifest (`own_size`, as stored) and of every blob it names."""
        return own_size + sum(b.size for b in self.blobs())

    @property
    def encrypted(self) -> bool:
        """Whether any layer is encrypted (OCI layer encryption): it must be decrypted before use."""
        return any(mt.is_encrypted(layer.media_type) for layer in self.layers)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        obj = _parse_json(data, "manifest")
        if not _is_schema_2(obj):
            raise CorruptData("manifest: schemaVersion is not 2")
        media_type = obj.get("mediaType", mt.OCI_MANIFEST)
        if media_type not in mt.MANIFEST_TYPES:
            raise CorruptData(f"manifest: unexpected mediaType {media_type!r}")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise CorruptData("manifest: layers is not a list")
        subject = obj.get("subject")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise CorruptData("manifest: artifactType is not a string")
        return cls(
            config=Descriptor.from_json(obj.get("config"), "manifest config"),
            layers=tuple(Descriptor.from_json(layer, f"manifest layer {i}") for i, layer in enumerate(layers)),
            annotations=_strings(obj.get("annotations"), "manifest"),
            artifact_type=artifact_type,
            subject=Descriptor.from_json(subject, "manifest subject") if subject is not None else None,
            media_type=media_type,
        )


@dataclass(frozen=True, slots=True)
class Index:
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    media_type: str = mt.OCI_INDEX
    artifact_type: str | None = None  # OCI 1.1 allows it on an index too (a pod checkpoint has one)

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifests", tuple(self.manifests))
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return _encode(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Index:
        """`max_bytes` is the registries' limit unless the caller knows better (a layout's own
        index.json, which grows with every tag)."""
        obj = _parse_json(data, "index", max_bytes)
        if not _is_schema_2(obj):
            raise CorruptData("index: schemaVersion is not 2")
        media_type = obj.get("mediaType", mt.OCI_INDEX)
        if media_type not in mt.INDEX_TYPES:
            raise CorruptData(f"index: unexpected mediaType {media_type!r}")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise CorruptData("index: manifests is not a list")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise CorruptData("index: artifactType is not a string")
        return cls(
            manifests=tuple(Descriptor.from_json(m, f"index entry {i}") for i, m in enumerate(manifests)),
            annotations=_strings(obj.get("annotations"), "index"),
            media_type=media_type,
            artifact_type=artifact_type,
        )


def media_type_of(data: bytes) -> str | None:
    """The mediaType a manifest or index document declares about itself, if any."""
    try:
        obj = _loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    declared = obj.get("mediaType")
    if isinstance(declared, str):
        return declared
    return mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST if "layers" in obj else None
