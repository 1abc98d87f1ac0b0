"""Write a checkpoint in the image shape another engine restores (`--compat podman|cri-o|kubernetes`).

The shape is an ordinary container image, because no runtime restores an artifact today: an OCI
image config (application/vnd.oci.image.config.v1+json, rootfs.diff_ids, no command), one gzip
tar layer holding the engine's archive at /, and manifest annotations with the key the engine
looks for (docs/compat.md). No artifactType, and no other engine's detection key.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
from pathlib import Path
from typing import BinaryIO

from .. import __version__
from ..errors import UsageError
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci import tarball
from ..oci.layout import Layout
from ..oci.model import Descriptor, Manifest
from ..progress import OnProgress, noop
from . import keys
from .exportdir import has_archive, read_json
from .write_archive import fill_archive_dir

SHAPES = ("ckpt", "podman", "cri-o", "kubernetes")


def check_compat(shape: str) -> None:
    if shape not in SHAPES:
        raise UsageError(f"unknown --compat {shape!r}", hint=f"one of: {', '.join(SHAPES)}")


def write_compat(layout: Layout, checkpoint: Checkpoint, shape: str, *, on_progress: OnProgress = noop) -> Descriptor:
    """Store `checkpoint` (in `layout`) again in `shape`, in the same layout; returns the new manifest."""
    check_compat(shape)
    if shape == "ckpt":
        return checkpoint.descriptor
    engine = checkpoint.config.engine
    wanted = "podman" if shape == "podman" else "cri-o"
    if not has_archive(checkpoint):
        raise UsageError(f"a {engine} checkpoint cannot become a {wanted} checkpoint image: {wanted} restores a "
                         "container onto its base image (rootfs-diff.tar and config.dump), and this checkpoint "
                         "has neither the engine's container configuration nor a base image")
    if shape == "podman" and engine != "podman":
        raise UsageError(f"a {engine} checkpoint cannot become a Podman checkpoint image: Podman needs its own "
                         f"container configuration (config.dump in libpod's format), and this one is {engine}'s")
    with tempfile.TemporaryDirectory(prefix=".ckpt-compat-", dir=layout.root.parent) as tmp:
        root = Path(tmp) / "archive"
        root.mkdir()
        fill_archive_dir(layout, checkpoint, root, on_progress=on_progress)
        config_dump = read_json(root / keys.CONFIG_DUMP, keys.CONFIG_DUMP)
        if shape == "podman":
            annotations = podman_annotations(checkpoint.config, config_dump)
        else:
            _make_crio_readable(root, config_dump)
            annotations = crio_annotations(checkpoint.config, config_dump)
        return write_image(layout, root, checkpoint.config, annotations)


def _common(config: CheckpointConfig, dump: dict) -> dict[str, str]:
    base_id = str(dump.get("rootfsImageID") or dump.get("rootfsImageRef") or "")
    out = {ann.CREATED: config.created, keys.CRIU_CONTAINER_NAME: config.container_name,
           keys.CRIU_ENGINE_NAME: config.engine, keys.CRIU_RUNTIME_NAME: config.runtime,
           keys.CRIU_HOST_ARCH: config.host.arch, keys.CRIU_VERSION: config.criu_version}
    if config.base_name:
        out.update({ann.BASE_NAME: config.base_name, keys.CRIU_ROOTFS_IMAGE_NAME: config.base_name,
                    keys.CRIU_ROOTFS_USER_REQUESTED: str(dump.get("RawImageName") or dump.get("rawImageName")
                                                         or dump.get("rootfsImage") or config.base_name)})
    if config.base_digest:
        out[ann.BASE_DIGEST] = config.base_digest
    if base_id:
        out[keys.CRIU_ROOTFS_IMAGE_ID] = base_id
    return out


def podman_annotations(config: CheckpointConfig, dump: dict) -> dict[str, str]:
    """Podman's keys (libpod/define/annotations.go). runtime.name must equal the restoring host's runtime."""
    out = _common(config, dump)
    out.update({
        keys.PODMAN_NAME: config.container_name,
        keys.PODMAN_RAW_IMAGE_NAME: str(dump.get("RawImageName") or dump.get("rawImageName") or config.base_name or ""),
        keys.PODMAN_ROOTFS_IMAGE_ID: str(dump.get("rootfsImageID") or ""),
        keys.PODMAN_ROOTFS_IMAGE_NAME: config.base_name or "",
        keys.PODMAN_CRIU_VERSION: podman_criu_version(config.criu_version),
        keys.PODMAN_RUNTIME_NAME: config.runtime or "runc",
        keys.PODMAN_RUNTIME_VERSION: config.runtime_version,
        keys.PODMAN_HOST_ARCH: config.host.arch,
        keys.PODMAN_HOST_KERNEL: config.host.kernel,
        keys.PODMAN_CGROUPS_VERSION: f"v{config.host.cgroup_version}" if config.host.cgroup_version else "",
    })
    return {k: v for k, v in out.items() if v}


def crio_annotations(config: CheckpointConfig, dump: dict) -> dict[str, str]:
    """CRI-O's keys (internal/annotations/checkpoint.go); only `name` makes CRI-O see a checkpoint."""
    out = _common(config, dump)
    out.update({
        keys.CRIO_NAME: config.container_name,
        keys.CRIO_ROOTFS_IMAGE_NAME: config.base_name or "",
        keys.CRIO_ROOTFS_IMAGE_ID: str(dump.get("rootfsImageRef") or dump.get("rootfsImageID") or ""),
        keys.CRIO_RAW_IMAGE_NAME: str(dump.get("rootfsImage") or dump.get("RawImageName") or config.base_name or ""),
        keys.CRIO_CRIU_VERSION: config.criu_version,
    })
    return {k: v for k, v in out.items() if v}


def podman_criu_version(version: str) -> str:
    """4.1.1 -> 40101, the integer form Podman writes."""
    parts = [int(p) for p in version.split(".")[:3] if p.isdigit()]
    if not parts:
        return ""
    parts += [0] * (3 - len(parts))
    return str(parts[0] * 10000 + parts[1] * 100 + parts[2])


def _make_crio_readable(root: Path, config_dump: dict) -> None:
    """CRI-O refuses a spec.dump without io.kubernetes.cri-o.Annotations, and reads config.dump's
    rootfsImage/rootfsImageRef: add what another engine's archive lacks (keeping what it has)."""
    spec = read_json(root / keys.SPEC_DUMP, keys.SPEC_DUMP)
    annotations = spec.setdefault("annotations", {}) if isinstance(spec, dict) else {}
    if keys.CRIO_ANNOTATIONS not in annotations:
        annotations[keys.CRIO_ANNOTATIONS] = json.dumps({k: v for k, v in annotations.items()}, sort_keys=True)
        (root / keys.SPEC_DUMP).write_text(json.dumps(spec, indent=2))
    changed = False
    for key, source in (("rootfsImage", "RawImageName"), ("rootfsImageRef", "rootfsImageID"),
                        ("rootfsImageName", "RawImageName")):
        if not config_dump.get(key) and config_dump.get(source):
            config_dump[key], changed = config_dump[source], True
    if changed:
        (root / keys.CONFIG_DUMP).write_text(json.dumps(config_dump, indent=2))


class _DiffIdTee:
    """Hashes the uncompressed tar (the diff_id) on its way into the gzip stream."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.hash = sink, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.sink.write(data)

    def flush(self) -> None:
        pass


def write_image(layout: Layout, root: Path, config: CheckpointConfig, annotations: dict[str, str]) -> Descriptor:
    """An image whose single layer is the directory `root` at /."""
    with layout.writing() as blob:
        with gzip.GzipFile(fileobj=blob, mode="wb", mtime=0) as compressed:  # type: ignore[arg-type]
            tee = _DiffIdTee(compressed)  # type: ignore[arg-type]
            tarball.pack(root, tee)  # type: ignore[arg-type]
        layer = blob.commit(mt.LAYER_TAR_GZIP)
    image_config = {
        "created": config.created, "architecture": config.host.arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + tee.hash.hexdigest()]},
        "history": [{"created": config.created, "created_by": f"ckpt {__version__} checkpoint of "
                                                               f"{config.container_name}"}],
    }
    config_desc = layout.put_bytes(json.dumps(image_config, sort_keys=True).encode(), mt.OCI_IMAGE_CONFIG)
    return layout.put_manifest(Manifest(config=config_desc, layers=(layer,), annotations=annotations))
