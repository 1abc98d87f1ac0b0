"""A ckpt pod checkpoint written back in the layout of the engine it came from (`ckpt convert REF
DEST --compat cri-o-pod|pod-archive`), from the pod-level files kept in its pod manifest's engine
layer and each member's archive (write_archive.py). Engine archives cannot be invented: only pods
that came from that engine can take its layout.

    cri-o-pod     DEST, an empty directory: pod-config.json, containers/<hex>.tar (each member's
                  CRI-O archive), and checkpoint-manifest.json last, with exactly the fields CRI-O
                  decodes (it refuses unknown ones) and each archive's sha256 as written here
    pod-archive   DEST.tar: pod.options (and pod.dump) as they were, and each member's archive
                  directory under the name pod.options gives it
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import CorruptData, UsageError
from ..format import pod as podfmt
from ..format.read import unpack_layer
from ..format.source import BlobSource
from ..oci.layout import Layout
from ..progress import OnProgress, noop
from . import archive
from .exportdir import POLICY
from .pod_read import CRIO, GEN1, MANIFEST, POD_CONFIG, POD_DUMP, POD_OPTIONS, crio_archive_name, loads
from .write_archive import fill_archive_dir

SHAPES = (CRIO, GEN1)
# What CRI-O's checkpoint-manifest.json may hold (server/pod_checkpoint.go: decoded strictly).
_CRIO_TOP = ("version", "runtime", "runtimeHandler", "sandboxId", "containers")
_CRIO_CONTAINER = ("name", "id", "archive", "sha256", "config")


def check_shape(shape: str, pod: podfmt.PodCheckpoint, files: dict[str, bytes]) -> None:
    """UsageError unless `pod` (whose pod-level engine files are `files`) can take `shape`."""
    engine = pod.config.engine
    if shape == CRIO and (engine != "cri-o" or MANIFEST not in files):
        raise UsageError(f"a {engine} pod checkpoint cannot become CRI-O's pod checkpoint: that needs CRI-O's own "
                         f"{MANIFEST} and its containers' CRI configs, which only a pod CRI-O checkpointed carries",
                         hint="--compat cri-o-pod takes pods read from CRI-O's CheckpointPod directories")
    if shape == GEN1 and (engine not in ("cri-o", "containerd") or POD_OPTIONS not in files):
        raise UsageError(f"a {engine} pod checkpoint cannot become a pod.options archive: that needs the "
                         f"{POD_OPTIONS} CRI-O or containerd wrote",
                         hint="--compat pod-archive takes pods read from such archives")
    if shape not in SHAPES:
        raise UsageError(f"unknown pod --compat {shape!r}", hint=f"one of: ckpt, {', '.join(SHAPES)}")


def pod_files(source: BlobSource, pod: podfmt.PodCheckpoint) -> dict[str, bytes]:
    """The engine's pod-level files kept in the pod manifest, by name."""
    with tempfile.TemporaryDirectory(prefix=".ckpt-pod-files-") as tmp:
        for layer in pod.engine_layers(source):
            unpack_layer(source, layer, Path(tmp), POLICY)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def write_pod_layout(layout: Layout, pod: podfmt.PodCheckpoint, shape: str, dest: Path, *,
                     on_progress: OnProgress = noop) -> int:
    """Write `pod` (every blob in `layout`) at `dest` in `shape`; returns the bytes written."""
    files = pod_files(layout, pod)
    check_shape(shape, pod, files)
    if shape == CRIO:
        return _crio(layout, pod, files, dest, on_progress)
    return _gen1(layout, pod, files, dest, on_progress)


def _crio(layout: Layout, pod: podfmt.PodCheckpoint, files: dict[str, bytes], dest: Path,
          on_progress: OnProgress) -> int:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} is not an empty directory", hint="CRI-O writes a pod checkpoint into one")
    manifest = loads(files[MANIFEST], MANIFEST)
    entries = manifest.get("containers") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise CorruptData(f"the pod checkpoint's {MANIFEST} has no list of containers")
    by_id = {m.id: m for m in pod.config.members}
    (dest / "containers").mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(dest / POD_CONFIG, files[POD_CONFIG])
    containers = []
    for entry in entries:
        member = by_id.get(entry.get("id"))
        if member is None:
            raise UsageError(f"the pod checkpoint has no member {entry.get('id')!r}, which its {MANIFEST} names")
        name = crio_archive_name(member.id)
        _archive(layout, pod.checkpoints[member.name], dest / name, on_progress)
        containers.append({**{k: entry[k] for k in _CRIO_CONTAINER if k in entry}, "archive": name,
                           "sha256": _sha256(dest / name)})
    written = {k: manifest[k] for k in _CRIO_TOP if k in manifest}
    written["containers"] = containers
    atomic.write_bytes(dest / MANIFEST, json.dumps(written, separators=(",", ":")).encode())  # last, as CRI-O does
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def _gen1(layout: Layout, pod: podfmt.PodCheckpoint, files: dict[str, bytes], dest: Path,
          on_progress: OnProgress) -> int:
    options = loads(files[POD_OPTIONS], POD_OPTIONS)
    containers = options.get("containers") if isinstance(options, dict) else None
    if not isinstance(containers, dict):
        raise CorruptData(f"the pod checkpoint's {POD_OPTIONS} has no map of containers")
    directories = {str(v): str(k) for k, v in containers.items()}
    by_key = {}
    for directory in directories:
        # The names come from the stored engine layer (a registry's, perhaps): each must be one
        # directory inside the archive, as the reader demands (pod_read.py).
        if not directory or "/" in directory or directory in (".", "..") or "\0" in directory:
            raise CorruptData(f"{POD_OPTIONS} names {directory!r} as a container's directory")
        member = next((m for m in pod.config.members if directory.startswith(f"{m.id}-")), None)
        if member is None:
            raise UsageError(f"the pod checkpoint has no member for {directory!r}, which its {POD_OPTIONS} names")
        by_key[directory] = member
    with tempfile.TemporaryDirectory(prefix=".ckpt-pod-", dir=dest.parent) as tmp:
        root = Path(tmp)
        for name in (POD_OPTIONS, POD_DUMP):
            if name in files:
                fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(files[name])
        for directory, member in by_key.items():
            (root / directory).mkdir()
            fill_archive_dir(layout, pod.checkpoints[member.name], root / directory, on_progress=on_progress)
        return archive.write(root, dest, compression="none")


def _archive(layout: Layout, checkpoint: Any, path: Path, on_progress: OnProgress) -> int:
    with tempfile.TemporaryDirectory(prefix=".ckpt-member-", dir=path.parent) as tmp:
        root = Path(tmp) / "archive"
        root.mkdir()
        fill_archive_dir(layout, checkpoint, root, on_progress=on_progress)
        return archive.write(root, path, compression="none")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
