"""Other engines' pod checkpoints, read into ckpt's pod format (format/pod.py). Two generations of
layout exist (docs/compat.md, "Pods"):

    pod.options (+ pod.dump)          CRI-O's and containerd's first pod checkpoints: one tar (or its
                                      directory) holding `pod.options` and one `<id>-<name>/` directory
                                      per container, each an unpacked container checkpoint archive
    checkpoint-manifest.json          the CheckpointPod of the merged CRI API: a directory holding the
    + pod-config.json                 manifest, the pod's CRI config and one archive per container,
                                      named after the sha256 of its id: CRI-O `containers/<hex>.tar`
                                      (version 1, with each archive's sha256), containerd
                                      `container-<hex>.tar` (version 2, an OCI layout of its checkpoint
                                      index)

Each container becomes a ckpt checkpoint through the single-container readers (exportdir.py,
containerd.py); the pod-level files are kept byte for byte in the pod manifest's engine layer, so
compat/pod_write.py can give them back. The engines' sandbox (the pause container) is never in
their checkpoints: the pod config has no sandbox, and the members' shared namespaces are
`engine-sandbox`.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CorruptData, UsageError
from ..format import pod as podfmt
from ..format.write import EngineFiles
from ..oci import annotations as ann
from ..oci.layout import Layout
from ..oci.model import Descriptor, Index
from ..progress import OnProgress, noop
from . import archive, containerd, keys
from .exportdir import read_info, write_ckpt
from .read import config_for

POD_OPTIONS = keys.POD_OPTIONS
POD_DUMP = keys.POD_DUMP  # containerd's first pod checkpoints: the CRI PodSandboxConfig
MANIFEST = keys.POD_MANIFEST
POD_CONFIG = "pod-config.json"
CRIO_DIR = "containers"
MAX_JSON = 16 << 20  # containerd's limit for the manifest; CRI-O's is 4 MiB
MAX_MEMBERS = 1024
GEN1, CRIO, CONTAINERD = "pod-archive", "cri-o-pod", "containerd-pod"


def crio_archive_name(container_id: str) -> str:
    return f"{CRIO_DIR}/{hashlib.sha256(container_id.encode()).hexdigest()}.tar"


def containerd_archive_name(container_id: str) -> str:
    return f"container-{hashlib.sha256(container_id.encode()).hexdigest()}.tar"


# -- recognising -----------------------------------------------------------------------------------

def is_pod_dir(path: Path) -> bool:
    return (path / POD_OPTIONS).is_file() or (path / MANIFEST).is_file()


def is_pod_archive(path: Path) -> bool:
    """Whether the tar at `path` holds a pod: read entry by entry until one decides (a top-level
    pod.options or manifest, or a container's files one level down; a container archive's own
    files at the top say no)."""
    try:
        with archive._decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for entry in tar:
                parts = [p for p in entry.name.split("/") if p not in ("", ".")]
                if parts in ([POD_OPTIONS], [MANIFEST]):
                    return True
                if len(parts) == 1 and parts[0] in (keys.CHECKPOINT_DIR, keys.CONFIG_DUMP, keys.SPEC_DUMP):
                    return False
                if len(parts) >= 2 and parts[1] in (keys.CHECKPOINT_DIR, keys.CONFIG_DUMP, keys.SPEC_DUMP):
                    return True
    except (tarfile.TarError, OSError, EOFError):
        return False
    return False


# -- reading ---------------------------------------------------------------------------------------

def _regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path` (never through a link), at most `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CorruptData(f"the pod checkpoint has no {path.name}") from None
    except OSError as exc:
        raise CorruptData(f"{path.name} in the pod checkpoint cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CorruptData(f"{path.name} in the pod checkpoint is not a regular file")
        if st.st_size > limit:
            raise CorruptData(f"{path.name} in the pod checkpoint is larger than {limit} bytes")
        return f.read(limit + 1)


def _json(path: Path) -> Any:
    return loads(_regular(path, MAX_JSON), path.name)


def loads(data: bytes, name: str) -> Any:
    """The pod file `name` (`data`) parsed; CorruptData if it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CorruptData(f"{name} in the pod checkpoint is not valid JSON: {exc}") from None


def _object(path: Path) -> dict[str, Any]:
    found = _json(path)
    if not isinstance(found, dict):
        raise CorruptData(f"{path.name} in the pod checkpoint is not a JSON object")
    return found


def _member_path(root: Path, relative: str, what: str) -> Path:
    """`root`/`relative`, which must stay under `root` and be no link."""
    parts = relative.split("/")
    if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise CorruptData(f"the pod checkpoint names {what} {relative!r}, which is not a plain relative path")
    path = root.joinpath(*parts)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise CorruptData(f"the pod checkpoint names {what} {relative!r}, which it does not hold") from None
    if stat.S_ISLNK(mode):
        raise CorruptData(f"{what} {relative!r} in the pod checkpoint is a link")
    return path


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    id: str
    source: Path  # the container's unpacked archive directory
    annotations: dict[str, str] = field(default_factory=dict)  # for its config (containerd: its CRIU options)


def _short_name(key: str) -> str:
    """The CRI name of a container from the key a pod.options uses: CRI-O's short name as it is,
    containerd's `<container>_<pod>_<namespace>_<uid>_<attempt>` (or `k8s_...`) cut to its first part."""
    parts = key.split("_")
    if parts[0] == "k8s" and len(parts) > 1:
        return parts[1]
    return parts[0]


def pod_to_ckpt(path: Path, layout: Layout, work: Path, *, on_progress: OnProgress = noop) -> tuple[Descriptor, str]:
    """Another engine's pod checkpoint (a directory, or an archive of one) into `layout` as a ckpt pod
    checkpoint; returns its index and the layout's name (pod-archive, cri-o-pod, containerd-pod)."""
    work.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        root = path
    else:
        root = work / "pod"
        root.mkdir()
        archive.unpack(path, root)
    if (root / POD_OPTIONS).exists():
        kind, identity, engine, members, annotations, pod_files = _gen1(root)
    elif (root / MANIFEST).exists():
        kind, identity, engine, members, annotations, pod_files = _gen2(root, work)
    else:
        raise UsageError(f"{path} holds neither {POD_OPTIONS} nor {MANIFEST}: it is no pod checkpoint")
    written = []
    for member in members:
        info = read_info(member.source)
        desc = write_ckpt(layout, member.source, config_for(info, member.annotations), on_progress=on_progress)
        desc = podfmt.member_annotations(layout, desc, identity)
        written.append(podfmt.PodMember(member.name, member.id, _namespaces(info.spec), desc))
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = podfmt.PodConfig(engine=engine, pod=identity, members=tuple(written), created=created, sandbox=None,
                              network_lock=podfmt.LOCK_CRIU, annotations=annotations)
    index = podfmt.write_pod(layout, config, engine_files=EngineFiles(root, pod_files))
    return index, kind


Read = tuple[str, podfmt.PodIdentity, str, list[_Member], dict[str, str], list[str]]


def _gen1(root: Path) -> Read:
    options = _json(root / POD_OPTIONS)
    if not isinstance(options, dict) or options.get("version") != 1:
        raise CorruptData(f"{POD_OPTIONS} version {options.get('version') if isinstance(options, dict) else None!r} "
                          "is not 1", hint="a newer ckpt may read it")
    containers = options.get("containers")
    if not isinstance(containers, dict) or not containers or len(containers) > MAX_MEMBERS:
        raise CorruptData(f"{POD_OPTIONS} names no containers")
    annotations = options.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise CorruptData(f"{POD_OPTIONS} annotations are not an object")
    annotations = {str(k): str(v) for k, v in annotations.items()}
    members = []
    for key, directory in sorted(containers.items()):
        if not isinstance(directory, str) or "/" in directory:
            raise CorruptData(f"{POD_OPTIONS} names {directory!r} as a container's directory")
        source = _member_path(root, directory, "container directory")
        config = _object(source / keys.CONFIG_DUMP)
        members.append(_Member(_short_name(str(key)), str(config.get("id") or directory.split("-")[0]), source))
    engine = annotations.get(ann.CRIU_ENGINE_NAME) or ("containerd" if (root / POD_DUMP).exists() else "cri-o")
    identity = podfmt.PodIdentity(annotations.get(podfmt.POD_NAME, ""), annotations.get(podfmt.POD_ID, ""),
                                  annotations.get(podfmt.POD_NAMESPACE, ""), annotations.get(podfmt.POD_UID, ""))
    if not identity.name and (root / POD_DUMP).exists():
        metadata = _object(root / POD_DUMP).get("metadata")
        identity = replace(identity, name=str(metadata.get("name", "") if isinstance(metadata, dict) else ""))
    pod_files = [POD_OPTIONS] + ([POD_DUMP] if (root / POD_DUMP).is_file() else [])
    return GEN1, _named(identity), engine, members, annotations, pod_files


def _gen2(root: Path, work: Path) -> Read:
    manifest = _json(root / MANIFEST)
    if not isinstance(manifest, dict):
        raise CorruptData(f"{MANIFEST} is not a JSON object")
    version, containers = manifest.get("version"), manifest.get("containers")
    if not isinstance(containers, list) or not containers or len(containers) > MAX_MEMBERS:
        raise CorruptData(f"{MANIFEST} names no containers")
    if version == 1 and manifest.get("runtime") == "cri-o":
        kind, engine = CRIO, "cri-o"
    elif version == 2 and "runtime" not in manifest:
        kind, engine = CONTAINERD, "containerd"
    else:
        raise CorruptData(f"{MANIFEST} version {version!r} (runtime {manifest.get('runtime')!r}) is no pod "
                          "checkpoint layout this ckpt knows (CRI-O's version 1, containerd's version 2)",
                          hint="a newer ckpt may read it")
    pod_config = _json(root / POD_CONFIG)
    metadata = pod_config.get("metadata") if isinstance(pod_config, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    identity = podfmt.PodIdentity(str(metadata.get("name", "")), str(manifest.get("sandboxId", "")),
                                  str(metadata.get("namespace", "")), str(metadata.get("uid", "")))
    members = []
    for i, entry in enumerate(containers):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise CorruptData(f"{MANIFEST} container {i} has no id")
        expected = (crio_archive_name if kind == CRIO else containerd_archive_name)(entry["id"])
        if entry.get("archive") != expected:
            raise CorruptData(f"{MANIFEST} names {entry.get('archive')!r} as the archive of {entry['id']}; "
                              f"{engine} names it {expected}")
        path = _member_path(root, expected, "container archive")
        if kind == CRIO:
            _check_sha256(path, entry.get("sha256"))
        dest = work / f"member-{i}"
        dest.mkdir()
        extra: dict[str, str] = {}
        if kind == CRIO:
            archive.unpack(path, dest)
        else:
            extra = _containerd_member(path, dest, work / f"member-{i}.layout")
        members.append(_Member(str(entry.get("name") or entry["id"]), entry["id"], dest, extra))
    pod_annotations = pod_config.get("annotations") if isinstance(pod_config, dict) else None
    annotations = {str(k): str(v) for k, v in (pod_annotations or {}).items()}
    return kind, _named(identity), engine, members, annotations, [MANIFEST, POD_CONFIG]


def _check_sha256(path: Path, expected: Any) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise CorruptData(f"the container archive {path.name} does not match the sha256 {MANIFEST} gives it")


def _containerd_member(path: Path, dest: Path, scratch: Path) -> dict[str, str]:
    """containerd's per-container file: an OCI layout (tar) whose index.json names its checkpoint
    index, which is the legacy `ctr checkpoint` index containerd.py reads."""
    scratch.mkdir()
    archive.unpack(path, scratch)
    layout = Layout(scratch)
    entries = layout.index().manifests
    if len(entries) != 1:
        raise CorruptData(f"{path.name} holds {len(entries)} entries in its index.json, not one checkpoint index")
    index = Index.from_bytes(layout.read_blob(entries[0]))
    if not containerd.is_legacy(index):
        raise CorruptData(f"{path.name} holds no containerd checkpoint index")
    return containerd.unpack(layout, index, dest)


def _named(identity: podfmt.PodIdentity) -> podfmt.PodIdentity:
    return identity if identity.name else replace(identity, name=identity.id[:12] or "pod")


def _namespaces(spec: dict[str, Any]) -> dict[str, str]:
    """A member's namespaces from its spec: one named by path is the engine's sandbox's."""
    out = {kind: podfmt.HOST for kind in podfmt.NAMESPACE_TYPES}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if isinstance(ns, dict) and ns.get("type") in out:
            out[ns["type"]] = podfmt.ENGINE_SANDBOX if ns.get("path") else podfmt.OWN
    return out

