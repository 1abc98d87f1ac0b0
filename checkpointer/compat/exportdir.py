"""A checkpoint archive unpacked into a directory, and its mapping onto ckpt's layer roles.

Podman's export, CRI-O's and containerd's CRI checkpoints (which the kubelet stores) share one
layout: `checkpoint/` (the CRIU images) beside the engine's files (config.dump, spec.dump,
rootfs-diff.tar, ...). In ckpt's format `checkpoint/` becomes the `criu` and `pages` roles, the
other files the `engine` role, and spec.dump also the `spec` role, so the directory can be rebuilt
exactly from the layers.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import CorruptData, UsageError
from ..format import roles
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint, unpack_images, unpack_layer, unpack_stream
from ..format.write import write_checkpoint, write_tar_layer
from ..host import criu_arch
from ..oci import tarball
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress, noop
from . import keys

# What engines write: files and directories, nothing else. Links, devices and setuid bits are
# refused like in CRIU layers, so a hostile archive cannot plant them.
POLICY = tarball.UnpackPolicy()
MAX_JSON = 16 << 20



@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """What an archive says about the container it came from."""

    engine: str  # podman, cri-o, containerd; runc for an archive ckpt exported from a runc checkpoint
    container_id: str
    container_name: str
    runtime: str
    base_name: str | None
    base_id: str | None
    created: str
    criu_version: str
    arch: str
    spec: dict


def read_json(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > MAX_JSON:
            raise CorruptData(f"{what} is larger than {MAX_JSON} bytes")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CorruptData(f"the checkpoint archive has no {what}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptData(f"{what} in the checkpoint archive is not valid JSON: {exc}") from None


def engine_of(root: Path, spec: dict) -> str:
    """The engine that wrote the archive, the way checkpointctl tells (io.container.manager)."""
    manager = (spec.get("annotations") or {}).get(keys.CONTAINER_MANAGER, "")
    if manager == "libpod":
        return "podman"
    if manager == "cri-o":
        return "cri-o"
    return "containerd"


def check_shape(root: Path) -> None:
    if (root / keys.CHECKPOINTED_PODS).exists():
        raise UsageError("this is a kubelet archive of whole pods (checkpointed.pods); ckpt restores single "
                         "containers", hint="checkpoint the containers one by one")
    if any((root / name).exists() for name in (keys.POD_OPTIONS, keys.POD_DUMP, keys.POD_MANIFEST)):
        raise UsageError("this is a pod checkpoint of several containers, not a single container's",
                         hint="`ckpt convert`, `ckpt inspect` and `ckpt restore` take it as a pod")
    if not (root / keys.CHECKPOINT_DIR).is_dir():
        also = " (only a pre-checkpoint/)" if (root / keys.PRE_CHECKPOINT_DIR).is_dir() else ""
        raise CorruptData(f"the checkpoint archive has no checkpoint/ directory of CRIU images{also}")


def read_info(root: Path) -> ArchiveInfo:
    check_shape(root)
    spec = read_json(root / keys.SPEC_DUMP, keys.SPEC_DUMP)
    config = read_json(root / keys.CONFIG_DUMP, keys.CONFIG_DUMP)
    if not isinstance(spec, dict) or not isinstance(config, dict):
        raise CorruptData("spec.dump and config.dump must be JSON objects")
    annotations = spec.get("annotations") or {}
    name = str(config.get("name") or annotations.get(keys.K8S_CONTAINER_NAME) or config.get("id") or "container")
    base = (config.get("rootfsImageName") or config.get("rootfsImage") or config.get("RawImageName")
            or config.get("rawImageName") or None)
    base_id = config.get("rootfsImageID") or config.get("rootfsImageRef") or None
    created = str(config.get("checkpointedTime") or config.get("createdTime") or "")
    engine = "runc" if config.get(keys.CKPT_COMPLETE_ROOTFS) is True else engine_of(root, spec)
    return ArchiveInfo(engine=engine, container_id=str(config.get("id") or name),
                       container_name=name, runtime=str(config.get("runtime") or "runc"),
                       base_name=str(base) if base else None, base_id=str(base_id) if base_id else None,
                       created=_rfc3339(created), criu_version=_criu_version(root / keys.DUMP_LOG),
                       arch=_arch(root / keys.CHECKPOINT_DIR), spec=spec)


def _rfc3339(text: str) -> str:
    """Go's RFC 3339 with nanoseconds and a zone, cut to seconds in UTC when it already is UTC."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:00)$", text)
    return match.group(1) + "Z" if match else text


def _criu_version(dump_log: Path) -> str:
    try:
        with open(dump_log, errors="replace") as log:
            for line in itertools.islice(log, 20):
                if match := re.search(r"Version:\s*([0-9][0-9.]*)", line):
                    return match.group(1)
    except OSError:
        pass
    return "unknown"


def _arch(images: Path) -> str:
    """The architecture the CRIU images were dumped on (core-*.img `mtype`), or "" if unreadable."""
    from ..criu import images as criu_images

    for core in sorted(images.glob("core-*.img"))[:1]:
        try:
            mtype = criu_images.load(core)["entries"][0].get("mtype", "")
        except (CorruptData, IndexError, KeyError, AttributeError):
            return ""
        return criu_arch(str(mtype))
    return ""


def criu_version_from_podman(value: str) -> str:
    """Podman writes CRIU's version as an integer: 40101 is 4.1.1."""
    if value.isdigit():
        number = int(value)
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return value


def write_ckpt(layout: Layout, root: Path, config: CheckpointConfig, *, on_progress: OnProgress = noop) -> Descriptor:
    """Store the archive directory `root` as a ckpt checkpoint; returns its manifest descriptor."""
    check_shape(root)
    spec_path = root / keys.SPEC_DUMP
    spec = spec_path.read_bytes() if spec_path.is_file() else None
    if config.engine == "runc":
        return _write_runc(layout, root, spec, config, on_progress)
    desc = write_checkpoint(layout, images=root / keys.CHECKPOINT_DIR, rootfs=None, spec=spec, config=config,
                            on_progress=on_progress)
    others = sorted(name for name in os.listdir(root) if name != keys.CHECKPOINT_DIR)
    if not others:
        return desc
    engine = write_tar_layer(layout, root, roles.ENGINE, names=others, on_progress=on_progress)
    return append_layers(layout, desc, [engine])


def _write_runc(layout: Layout, root: Path, spec: bytes | None, config: CheckpointConfig,
                on_progress: OnProgress) -> Descriptor:
    """An archive ckpt exported from a runc checkpoint, back in the shape it had: its
    rootfs-diff.tar is the whole root filesystem (the rootfs role), and nothing is left for an
    engine role."""
    if spec is None or not (root / keys.ROOTFS_DIFF).is_file():
        raise CorruptData(f"the archive says it holds a whole root filesystem, but it lacks {keys.SPEC_DUMP} "
                          f"or {keys.ROOTFS_DIFF}")
    with tempfile.TemporaryDirectory(prefix=".rootfs-", dir=root.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir(mode=0o755)
        with open(root / keys.ROOTFS_DIFF, "rb") as tar:
            unpack_stream(tar, rootfs, tarball.ROOTFS, what=keys.ROOTFS_DIFF)
        return write_checkpoint(layout, images=root / keys.CHECKPOINT_DIR, rootfs=rootfs, spec=spec, config=config,
                                on_progress=on_progress)


def append_layers(layout: Layout, desc: Descriptor, layers: list[Descriptor]) -> Descriptor:
    """A new manifest: `desc`'s with `layers` added at the end (the old one stays unreferenced)."""
    manifest = layout.read_manifest(desc)
    return layout.put_manifest(replace(manifest, layers=(*manifest.layers, *layers)))


def has_archive(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint carries an engine's archive files (it came from Podman, CRI-O, ...)."""
    return bool(checkpoint.layers(roles.ENGINE))


def unpack_archive_dir(layout: Layout, checkpoint: Checkpoint, dest: Path, *, on_progress: OnProgress = noop) -> None:
    """Rebuild the engine's archive directory in `dest` (which must exist) from the checkpoint's layers."""
    for layer in checkpoint.layers(roles.ENGINE):
        unpack_layer(layout, layer, dest, POLICY)
    images = dest / keys.CHECKPOINT_DIR
    images.mkdir(mode=0o700, exist_ok=True)
    unpack_images(layout, checkpoint, images, on_progress=on_progress)
