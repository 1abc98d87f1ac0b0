"""Read other engines' checkpoints into ckpt's format: archives (Podman export, CRI-O, containerd
CRI, kubelet), single-layer checkpoint images (Podman, CRI-O, checkpointctl) and containerd's
legacy `ctr checkpoint` index. Each reader unpacks into a work directory and writes a ckpt
checkpoint into a Layout, so restore and inspect only ever see ckpt's format.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..errors import UsageError
from ..format.config import CheckpointConfig
from ..format.pod import refuse_pod
from ..format.read import unpack_layer
from ..host import HostInfo
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import Descriptor, Index
from ..progress import OnProgress, noop
from . import archive, containerd, keys
from .exportdir import POLICY, ArchiveInfo, criu_version_from_podman, read_info, write_ckpt

DOCKER_LAYERS = {"application/vnd.docker.image.rootfs.diff.tar.gzip": mt.LAYER_TAR_GZIP,
                 "application/vnd.docker.image.rootfs.diff.tar": mt.LAYER_TAR}


def image_kind(annotations: Mapping[str, str]) -> str | None:
    """Which engine's checkpoint image the annotations mark, if any (the key each engine checks)."""
    if any(key.startswith(keys.PODMAN) for key in annotations):
        return "podman"
    if keys.CRIO_NAME in annotations:
        return "cri-o"
    if any(key.startswith(keys.CRIU) for key in annotations):
        return "checkpointctl"
    return None


def archive_to_ckpt(path: Path, layout: Layout, work: Path, *,
                    on_progress: OnProgress = noop) -> tuple[Descriptor, str]:
    """A checkpoint archive file into `layout`; returns the manifest and the archive's origin."""
    work.mkdir(parents=True, exist_ok=True)
    archive.unpack(path, work)
    info = read_info(work)
    return write_ckpt(layout, work, config_for(info, {}), on_progress=on_progress), f"{info.engine}-archive"


def image_to_ckpt(src: Layout, desc: Descriptor, out: Layout, work: Path, *,
                  index_annotations: Callable[[], Mapping[str, str]] = dict,
                  on_progress: OnProgress = noop) -> tuple[Descriptor, str]:
    """Another engine's checkpoint image (manifest or index `desc` in `src`) into `out`."""
    work.mkdir(parents=True, exist_ok=True)
    top: Mapping[str, str] = {}
    if desc.media_type in mt.INDEX_TYPES:
        index = Index.from_bytes(src.read_blob(desc))
        refuse_pod(index, desc.digest)  # one member of a pod is not the pod (docs/format.md section 6)
        if containerd.is_legacy(index):
            extra = containerd.unpack(src, index, work)
            info = read_info(work)
            return write_ckpt(out, work, config_for(info, extra), on_progress=on_progress), "containerd-legacy"
        top, desc = index.annotations, _only_manifest(index, desc)
    manifest = src.read_manifest(desc)
    annotations = {**top, **manifest.annotations}
    kind = image_kind(annotations)
    if kind is None:
        annotations = {**index_annotations(), **annotations}
        kind = image_kind(annotations)
    if kind is None:
        raise UsageError(f"{desc.digest} is not a checkpoint: neither ckpt's artifact nor another engine's "
                         "checkpoint image (no io.podman.annotations.checkpoint.*, "
                         "io.kubernetes.cri-o.annotations.checkpoint.name or org.criu.checkpoint.* annotation)",
                         hint="is it the container's image rather than its checkpoint?")
    for layer in manifest.layers:
        unpack_layer(src, replace(layer, media_type=DOCKER_LAYERS.get(layer.media_type, layer.media_type)),
                     work, POLICY)
    info = read_info(work)
    return write_ckpt(out, work, config_for(info, annotations), on_progress=on_progress), f"{kind}-image"


def _only_manifest(index: Index, desc: Descriptor) -> Descriptor:
    from ..host import arch

    manifests = [d for d in index.manifests if d.media_type in mt.MANIFEST_TYPES]
    if len(manifests) == 1:
        return manifests[0]
    for candidate in manifests:
        if (candidate.platform or {}).get("architecture") == arch():
            return candidate
    raise UsageError(f"index {desc.digest} holds no single checkpoint manifest for {arch()}")


def _first(annotations: Mapping[str, str], *names: str) -> str:
    return next((annotations[n] for n in names if annotations.get(n)), "")


def config_for(info: ArchiveInfo, annotations: Mapping[str, str]) -> CheckpointConfig:
    """ckpt's config for an archive, from its files first and the image's annotations second."""
    from ..criu.options import CriuOptions
    from ..host import arch as host_arch

    criu = info.criu_version
    if criu == "unknown":
        criu = criu_version_from_podman(_first(annotations, keys.PODMAN_CRIU_VERSION, keys.CRIU_VERSION,
                                               keys.CRIO_CRIU_VERSION)) or "unknown"
    cgroups = _first(annotations, keys.PODMAN_CGROUPS_VERSION, ann.CRIU_CGROUP_VERSION).lstrip("v")
    runtime_version = _first(annotations, keys.PODMAN_RUNTIME_VERSION, keys.CRIU_RUNTIME_VERSION)
    runtime_version = runtime_version.splitlines()[0].split()[-1] if runtime_version.strip() else ""
    host = HostInfo(arch=info.arch or _first(annotations, keys.PODMAN_HOST_ARCH, keys.CRIU_HOST_ARCH) or host_arch(),
                    kernel=_first(annotations, keys.PODMAN_HOST_KERNEL, keys.CRIU_HOST_KERNEL),
                    cgroup_version=int(cgroups) if cgroups.isdigit() else 0, cpu_flags=())
    created = info.created or annotations.get(ann.CREATED) or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = info.base_name or _first(annotations, keys.PODMAN_ROOTFS_IMAGE_NAME, keys.CRIO_ROOTFS_IMAGE_NAME,
                                    keys.CRIU_ROOTFS_IMAGE_NAME) or None
    options = annotations.get(containerd.OPTIONS_KEY)
    return CheckpointConfig(
        engine=info.engine, runtime=info.runtime, runtime_version=runtime_version, criu_version=criu, host=host,
        container_id=info.container_id, container_name=info.container_name, created=created,
        criu_options=CriuOptions.from_json(containerd.options_json(options)) if options else CriuOptions(),
        base_name=base, base_digest=annotations.get(ann.BASE_DIGEST) or None, ckpt_version=__version__)
