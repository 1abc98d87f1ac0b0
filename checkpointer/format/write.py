"""Write a checkpoint image into a Layout: one zstd tar layer per role, a config, a manifest."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci import tarball
from ..oci.layout import Layout
from ..oci.model import Descriptor, Manifest
from ..progress import OnProgress, Update, noop
from . import roles
from .config import CheckpointConfig
from .pages import write_pages

ZSTD_LEVEL = 3


class _Counting:
    """Passes writes through and reports how many bytes went by."""

    def __init__(self, sink: BinaryIO, report: OnProgress, phase: str, total: int) -> None:
        self._sink, self._report, self._phase, self._total = sink, report, phase, total
        self.count = 0

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        self.count += len(data)
        # tar headers and padding come on top of the file sizes the total was made of
        self._report(Update(self._phase, self.count, max(self._total, self.count)))
        return len(data)

    def flush(self) -> None:
        pass


def tree_size(root: Path, names: list[str] | None = None) -> int:
    total = 0
    tops = [root / n for n in names] if names is not None else [root]
    for top in tops:
        if top.is_file():
            total += top.stat().st_size
            continue
        for dirpath, _, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
    return total


OnBlob = Callable[[Descriptor, "bytes | None"], None]  # a stored blob, and its bytes if at hand


def write_tar_layer(layout: Layout, root: Path, role: str, *, names: list[str] | None = None,
                    zero_mtime: bool = True, include_root: bool = False,
                    on_progress: OnProgress = noop) -> Descriptor:
    total = tree_size(root, names)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
    with layout.writing() as blob:
        # zstandard and tarball.pack only write() and flush() the streams they are given
        with compressor.stream_writer(cast(IO[bytes], blob), closefd=False) as zstd_out:
            counting = _Counting(cast(BinaryIO, zstd_out), on_progress, f"pack {role}", total)
            tarball.pack(root, cast(BinaryIO, counting), names=names, zero_mtime=zero_mtime,
                         include_root=include_root)
        return blob.commit(mt.LAYER_TAR_ZSTD, {ann.LAYER_ROLE: role})


def manifest_annotations(config: CheckpointConfig) -> dict[str, str]:
    out = {
        ann.CREATED: config.created,
        ann.CRIU_ENGINE_NAME: config.engine,
        ann.CRIU_CONTAINER_NAME: config.container_name,
        ann.CRIU_RUNTIME_NAME: config.runtime,
        ann.CRIU_RUNTIME_VERSION: config.runtime_version,
        ann.CRIU_VERSION: config.criu_version,
        ann.CRIU_HOST_ARCH: config.host.arch,
        ann.CRIU_HOST_KERNEL: config.host.kernel,
        ann.CRIU_CGROUP_VERSION: str(config.host.cgroup_version),
    }
    if config.base_name:
        out[ann.BASE_NAME] = config.base_name
        out[ann.CRIU_ROOTFS_IMAGE_NAME] = config.base_name
    if config.base_digest:
        out[ann.BASE_DIGEST] = config.base_digest
    return out


@dataclass(frozen=True, slots=True)
class EngineFiles:
    """An engine's own files beside its CRIU images (Podman's export: config.dump, spec.dump,
    rootfs-diff.tar, ...), stored as the `engine` role so its archive can be rebuilt exactly."""

    root: Path
    names: list[str]


def write_checkpoint(layout: Layout, *, images: Path, rootfs: Path | None, spec: bytes | None,
                     config: CheckpointConfig, subject: Descriptor | None = None,
                     engine_files: EngineFiles | None = None,
                     on_progress: OnProgress = noop, on_blob: OnBlob | None = None) -> Descriptor:
    """Store a checkpoint made of a CRIU image dir (+ rootfs and runtime spec, or an engine's files)
    and return its manifest. `on_blob` hears of each blob as soon as it is stored (to start uploading
    it at once)."""
    ready = on_blob or (lambda desc, data: None)
    criu_files, pages_files = roles.split_images(images)
    layers = [write_tar_layer(layout, images, roles.CRIU, names=criu_files, on_progress=on_progress)]
    ready(layers[0], None)
    if pages_files:
        layers += write_pages(layout, images, pages_files, on_progress=on_progress, on_blob=ready)
    if rootfs is not None:
        layers.append(write_tar_layer(layout, rootfs, roles.ROOTFS, zero_mtime=False, include_root=True,
                                      on_progress=on_progress))
        ready(layers[-1], None)
    if spec is not None:
        layers.append(layout.put_bytes(spec, mt.RUNTIME_SPEC, {ann.LAYER_ROLE: roles.SPEC}))
        ready(layers[-1], spec)
    if engine_files is not None and engine_files.names:
        layers.append(write_tar_layer(layout, engine_files.root, roles.ENGINE, names=engine_files.names,
                                      on_progress=on_progress))
        ready(layers[-1], None)
    config_desc = layout.put_bytes(config.to_bytes(), mt.CHECKPOINT_CONFIG)
    manifest = Manifest(config=config_desc, layers=tuple(layers), annotations=manifest_annotations(config),
                        artifact_type=mt.CHECKPOINT_ARTIFACT, subject=subject)
    return layout.put_manifest(manifest)
