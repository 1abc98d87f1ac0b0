"""The pod checkpoint (docs/format.md section 9): an OCI image index whose artifactType is
application/vnd.ckpt.pod.v1. It names a pod manifest (the pod config: who the members are, which
namespaces each owns or joins, the order to restore them in) and one unchanged ckpt checkpoint
manifest per member. Blobs two members share are stored once, by digest.

    index  artifactType application/vnd.ckpt.pod.v1
      [0] pod manifest    config application/vnd.ckpt.pod.config.v1+json, layers: engine files or empty
      [1..] members       ckpt checkpoints (artifactType application/vnd.ckpt.checkpoint.v1)
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..criu.options import CriuOptions
from ..errors import CorruptData, UsageError
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import EMPTY_CONFIG_DATA, Descriptor, Index, Manifest
from . import roles
from .read import Checkpoint, is_checkpoint, open_checkpoint
from .source import BlobSource
from .write import EngineFiles, OnBlob, write_tar_layer

POD_ARTIFACT = "application/vnd.ckpt.pod.v1"
POD_CONFIG = "application/vnd.ckpt.pod.config.v1+json"
SCHEMA_VERSION = 1

# Index entry annotations: which entry is the pod manifest, and which member each other one is.
ROLE = ann.CKPT_PREFIX + "pod.role"
MEMBER = ann.CKPT_PREFIX + "pod.member"
ROLE_POD, ROLE_MEMBER = "pod", "member"

# checkpointctl's pod keys (lib/annotations.go), on the index and on every member's manifest.
POD_NAME = ann.CRIU_PREFIX + "pod.name"
POD_ID = ann.CRIU_PREFIX + "pod.id"
POD_NAMESPACE = ann.CRIU_PREFIX + "pod.namespace"
POD_UID = ann.CRIU_PREFIX + "pod.uid"

# What a member's namespace of one type is: its own, the host's, one of the engine's sandbox
# (a pause container the engine recreates and that is not a member), or a member's, by name.
OWN, HOST, ENGINE_SANDBOX = "own", "host", "engine-sandbox"
NAMESPACE_TYPES = ("network", "ipc", "uts", "pid", "mount", "cgroup", "user", "time")
# Network locks: ckpt's own over the pod's network namespace for the whole dump (and restore), or
# CRIU's, taken and dropped by each member's dump on its own.
LOCK_POD, LOCK_CRIU = "pod", "criu"
MAX_MEMBERS = 256
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """The pod as its engine knows it (checkpointctl's org.criu.checkpoint.pod.* keys)."""

    name: str
    id: str = ""
    namespace: str = ""
    uid: str = ""

    def annotations(self) -> dict[str, str]:
        keys = ((POD_NAME, self.name), (POD_ID, self.id), (POD_NAMESPACE, self.namespace), (POD_UID, self.uid))
        return {key: value for key, value in keys if value}


@dataclass(frozen=True, slots=True)
class PodMember:
    name: str  # unique in the pod: [A-Za-z0-9][A-Za-z0-9_.-]*
    id: str  # the container id at save
    namespaces: Mapping[str, str]  # type -> OWN, HOST, ENGINE_SANDBOX or a member's name
    manifest: Descriptor | None = None  # its checkpoint; None until it is written

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespaces", MappingProxyType(dict(self.namespaces)))
        if self.manifest is not None:  # what the config records of it: the index entry says the rest
            object.__setattr__(self, "manifest", Descriptor(self.manifest.media_type, self.manifest.digest,
                                                            self.manifest.size))

    def joins(self) -> dict[str, str]:
        """The namespaces it shares with another member: type -> that member's name."""
        return {kind: owner for kind, owner in self.namespaces.items() if owner not in (OWN, HOST, ENGINE_SANDBOX)}


@dataclass(frozen=True, slots=True)
class PodConfig:
    engine: str  # runc, podman, cri-o, containerd
    pod: PodIdentity
    members: tuple[PodMember, ...]
    created: str
    sandbox: str | None = None  # the member that owns the shared namespaces; None: the engine's own
    restore_order: tuple[str, ...] = ()  # default: owners before the members that join them
    criu_options: CriuOptions = field(default_factory=CriuOptions)
    network_lock: str = LOCK_POD
    annotations: Mapping[str, str] = field(default_factory=dict)
    ckpt_version: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        if not self.restore_order:
            object.__setattr__(self, "restore_order", owners_first(self.members, self.sandbox))
        check_members(self)

    def member(self, name: str) -> PodMember:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        members = []
        for member in self.members:
            if member.manifest is None:
                raise ValueError(f"member {member.name!r} has no manifest yet")
            members.append({"name": member.name, "id": member.id, "namespaces": dict(member.namespaces),
                            "manifest": {"mediaType": member.manifest.media_type, "digest": member.manifest.digest,
                                         "size": member.manifest.size}})
        return {
            "schemaVersion": SCHEMA_VERSION, "ckptVersion": self.ckpt_version, "created": self.created,
            "engine": self.engine,
            "pod": {"name": self.pod.name, "id": self.pod.id, "namespace": self.pod.namespace, "uid": self.pod.uid},
            "sandbox": self.sandbox, "members": members, "restoreOrder": list(self.restore_order),
            "criu": {"options": self.criu_options.to_json()}, "networkLock": self.network_lock,
            "annotations": dict(self.annotations),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PodConfig:
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            if obj.get("schemaVersion") != SCHEMA_VERSION:
                raise CorruptData(f"pod config schemaVersion {obj.get('schemaVersion')!r} is not {SCHEMA_VERSION}",
                                  hint="a newer ckpt may read it")
            pod = obj["pod"]
            members = obj["members"]
            if not isinstance(members, list) or not members or len(members) > MAX_MEMBERS:
                raise ValueError(f"members must be a list of 1 to {MAX_MEMBERS}")
            return cls(
                engine=_text(obj["engine"]),
                pod=PodIdentity(_text(pod["name"]), _text(pod.get("id", "")), _text(pod.get("namespace", "")),
                                _text(pod.get("uid", ""))),
                members=tuple(_member(m) for m in members),
                created=_text(obj.get("created", "")),
                sandbox=_text(obj["sandbox"]) if obj.get("sandbox") is not None else None,
                restore_order=tuple(_text(n) for n in obj.get("restoreOrder") or ()),
                criu_options=CriuOptions.from_json((obj.get("criu") or {}).get("options")),
                network_lock=_text(obj.get("networkLock", LOCK_CRIU)),
                annotations=_strings(obj.get("annotations") or {}),
                ckpt_version=_text(obj.get("ckptVersion", "")),
            )
        except CorruptData:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CorruptData(f"pod config is malformed: {exc!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("annotations must map strings to strings")
    return value


def _member(obj: Any) -> PodMember:
    manifest = obj["manifest"]
    desc = Descriptor(_text(manifest.get("mediaType", mt.OCI_MANIFEST)), _text(manifest["digest"]),
                      manifest["size"] if isinstance(manifest["size"], int) else -1)
    return PodMember(name=_text(obj["name"]), id=_text(obj.get("id", "")),
                     namespaces={_text(k): _text(v) for k, v in (obj.get("namespaces") or {}).items()}, manifest=desc)


def owners_first(members: Sequence[PodMember], sandbox: str | None) -> tuple[str, ...]:
    """Member names with every namespace owner before the members that join it, the sandbox first,
    else in the given order (a cycle is left for check_members to refuse)."""
    order: list[str] = []
    pending = sorted(members, key=lambda m: m.name != sandbox)
    while pending:
        ready = [m for m in pending if all(owner in order for owner in m.joins().values())]
        if not ready:
            return tuple(order + [m.name for m in pending])
        order.append(ready[0].name)
        pending.remove(ready[0])
    return tuple(order)


def check_members(config: PodConfig) -> None:
    """CorruptData unless the members make sense: unique names, known namespace types, joins of
    members that exist (not of itself, no cycle), a restore order that brings owners first."""
    names = [m.name for m in config.members]
    if not names or len(names) > MAX_MEMBERS:
        raise CorruptData(f"a pod has 1 to {MAX_MEMBERS} members, not {len(names)}")
    if len(set(names)) != len(names):
        raise CorruptData("two members of the pod have the same name")
    for member in config.members:
        if not _NAME.fullmatch(member.name):
            raise CorruptData(f"pod member name {member.name!r} is not [A-Za-z0-9][A-Za-z0-9_.-]*")
        if member.id and not _NAME.fullmatch(member.id):  # restored under it: a runc id, a bundle directory
            raise CorruptData(f"pod member {member.name!r} has the container id {member.id!r}, which is not "
                              "[A-Za-z0-9][A-Za-z0-9_.-]*")
        for kind, owner in member.namespaces.items():
            if kind not in NAMESPACE_TYPES:
                raise CorruptData(f"member {member.name!r}: unknown namespace type {kind!r}")
            if owner not in (OWN, HOST, ENGINE_SANDBOX) and (owner not in names or owner == member.name):
                raise CorruptData(f"member {member.name!r} joins the {kind} namespace of {owner!r}, "
                                  "which is no other member of the pod")
    if config.sandbox is not None and config.sandbox not in names:
        raise CorruptData(f"the pod's sandbox {config.sandbox!r} is none of its members")
    order = config.restore_order
    if sorted(order) != sorted(names):
        raise CorruptData("the pod's restoreOrder does not name every member exactly once")
    for position, name in enumerate(order):
        owners = config.member(name).joins().values()
        if any(order.index(owner) > position for owner in owners):
            raise CorruptData(f"member {name!r} comes before a member whose namespace it joins "
                              "(a cycle, or a restoreOrder that is not owners first)")
    if config.network_lock not in (LOCK_POD, LOCK_CRIU):
        raise CorruptData(f"unknown networkLock {config.network_lock!r}")


# -- recognising ----------------------------------------------------------------------------------

def is_pod_index(index: Index) -> bool:
    """A pod: by the index's artifactType, or (where a tool dropped it) by an entry's role."""
    return index.artifact_type == POD_ARTIFACT or any(
        entry.artifact_type == POD_ARTIFACT or entry.annotations.get(ROLE) == ROLE_POD for entry in index.manifests)


def refuse_pod(index: Index, what: str) -> None:
    """UsageError when `index` is a pod: a single-container reader must not restore one member."""
    if is_pod_index(index):
        members = sum(entry.annotations.get(ROLE) == ROLE_MEMBER for entry in index.manifests)
        raise UsageError(f"{what} is a pod checkpoint of {members} containers, not a single container's",
                         hint="`ckpt restore` and `ckpt inspect` of this ckpt take pods as a whole")


# -- writing --------------------------------------------------------------------------------------

def member_annotations(layout: Layout, desc: Descriptor, pod: PodIdentity) -> Descriptor:
    """The member's manifest again, with the pod's keys among its annotations (a member fetched on
    its own still tells which pod it came from); stored beside the old one."""
    manifest = layout.read_manifest(desc)
    return layout.put_manifest(replace(manifest, annotations={**manifest.annotations, **pod.annotations()}))


def write_pod(layout: Layout, config: PodConfig, *, engine_files: EngineFiles | None = None,
              on_blob: OnBlob | None = None) -> Descriptor:
    """Store the pod manifest and the index for `config`, whose members are all written (each
    member.manifest in `layout`); returns the index's descriptor. The pod's own blobs go to `on_blob`."""
    ready = on_blob or (lambda desc, data: None)
    entries = []
    for member in config.members:
        if member.manifest is None:
            raise ValueError(f"member {member.name!r} is not written yet")
        checkpoint = layout.read_manifest(member.manifest)
        if not is_checkpoint(checkpoint):
            raise ValueError(f"member {member.name!r} is not a ckpt checkpoint")
        entries.append(replace(member.manifest, artifact_type=mt.CHECKPOINT_ARTIFACT,
                               annotations={ROLE: ROLE_MEMBER, MEMBER: member.name}))
    config_data = config.to_bytes()
    config_desc = layout.put_bytes(config_data, POD_CONFIG)
    ready(config_desc, config_data)
    if engine_files is not None and engine_files.names:
        layers = (write_tar_layer(layout, engine_files.root, roles.ENGINE, names=engine_files.names),)
        ready(layers[0], None)
    else:
        layers = (layout.put_bytes(EMPTY_CONFIG_DATA, mt.OCI_EMPTY),)
        ready(layers[0], EMPTY_CONFIG_DATA)
    annotations = {ann.CREATED: config.created, ann.CRIU_ENGINE_NAME: config.engine, **config.pod.annotations()}
    pod_manifest = Manifest(config=config_desc, layers=layers, annotations=annotations, artifact_type=POD_ARTIFACT)
    pod_desc = replace(layout.put_manifest(pod_manifest), annotations={ROLE: ROLE_POD})
    index = Index((pod_desc, *entries), annotations=annotations, artifact_type=POD_ARTIFACT)
    stored = layout.put_bytes(index.to_bytes(), mt.OCI_INDEX)
    return Descriptor(mt.OCI_INDEX, stored.digest, stored.size, artifact_type=POD_ARTIFACT)


# -- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PodCheckpoint:
    descriptor: Descriptor  # the index
    index: Index
    manifest: Descriptor  # the pod manifest
    config: PodConfig
    checkpoints: Mapping[str, Checkpoint]  # by member name

    def engine_layers(self, source: BlobSource) -> tuple[Descriptor, ...]:
        """The pod manifest's `engine` layers (another engine's pod-level files), if any."""
        manifest = source.read_manifest(self.manifest)
        return tuple(layer for layer in manifest.layers if layer.annotations.get(ann.LAYER_ROLE) == roles.ENGINE)


def read_index(source: BlobSource, desc: Descriptor) -> Index:
    return Index.from_bytes(source.read_blob(desc))


def open_pod(index_source: BlobSource, desc: Descriptor,
             source_for: Callable[[Descriptor], BlobSource] | None = None) -> PodCheckpoint:
    """The pod checkpoint whose index is `desc`: the index, the pod config and each member's
    manifest and config are read, nothing else. `source_for(manifest)` gives the BlobSource a
    manifest is read through (default: `index_source`). Every member the config names must be an
    entry of the index, with the same digest and size, and a ckpt checkpoint."""
    index = read_index(index_source, desc)
    if not is_pod_index(index):
        raise UsageError(f"{desc.digest} is not a pod checkpoint")
    pod_entries = [e for e in index.manifests
                   if e.annotations.get(ROLE) == ROLE_POD or e.artifact_type == POD_ARTIFACT]
    if len(pod_entries) != 1:
        raise CorruptData(f"a pod index names exactly one pod manifest, this one {len(pod_entries)}")
    pick: Callable[[Descriptor], BlobSource] = source_for or (lambda entry: index_source)
    pod_desc = pod_entries[0]
    pod_manifest = pick(pod_desc).read_manifest(pod_desc)
    if pod_manifest.config.media_type != POD_CONFIG:
        raise CorruptData(f"the pod manifest's config is {pod_manifest.config.media_type!r}, not {POD_CONFIG}")
    config = PodConfig.from_bytes(pick(pod_desc).read_blob(pod_manifest.config))
    by_digest = {e.digest: e for e in index.manifests if e is not pod_desc}
    checkpoints = {}
    for member in config.members:
        assert member.manifest is not None
        entry = by_digest.get(member.manifest.digest)
        if entry is None or entry.size != member.manifest.size:
            raise CorruptData(f"the pod config names member {member.name!r} as {member.manifest.digest}, "
                              "which the index does not hold (with that size)")
        checkpoints[member.name] = open_checkpoint(pick(entry), entry)
    return PodCheckpoint(desc, index, pod_desc, config, MappingProxyType(checkpoints))
