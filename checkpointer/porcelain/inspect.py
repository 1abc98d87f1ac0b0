"""`ckpt inspect`: what a checkpoint holds, without restoring it. Only the config and the small CRIU
layer are read (from a registry, only they are fetched), and of the memory only the pages chunk
that holds each process's command line (the pages whole when they are small and not in chunks)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..criu import images as criu_images
from ..errors import CorruptData, UsageError
from ..format import roles
from ..format.config import CheckpointConfig
from ..format.read import Checkpoint, unpack_layer
from ..format.source import BlobSource
from ..lazy.chunks import ChunkMap
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci import tarball
from ..oci.model import Descriptor
from ..reference import parse
from .home import Home
from .places import RegistryOptions, read_checkpoint

SMALL_PAGES = 64 << 20  # command lines live in memory pages: those are unpacked only up to this size


@dataclass(frozen=True, slots=True)
class LayerView:
    role: str
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class InspectView:
    reference: str
    digest: str
    config: CheckpointConfig
    layers: tuple[LayerView, ...]
    processes: tuple[criu_images.Process, ...]
    origin: str = "ckpt"  # the format it was read from: ckpt, podman-image, cri-o-archive, ...

    @property
    def memory(self) -> int:
        return sum(p.memory for p in self.processes)

    def to_json(self) -> dict:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "origin": self.origin,
            "config": self.config.to_json(),
            "layers": [{"role": layer.role, "mediaType": layer.media_type, "digest": layer.digest,
                        "size": layer.size} for layer in self.layers],
            "processes": [{"pid": p.pid, "ppid": p.ppid, "command": p.cmdline, "comm": p.comm,
                           "threads": p.threads, "memory": p.memory} for p in self.processes],
            "memory": self.memory,
        }


def inspect(ref: str, *, home: Home | None = None, registry: RegistryOptions = RegistryOptions(),
            decrypt_keys: Sequence[Any] = ()) -> InspectView:
    """What the checkpoint `ref` holds; another engine's checkpoint is read through its conversion.
    An encrypted one shows its config and layers, and its processes only with `decrypt_keys`."""
    home = home or Home()
    with read_checkpoint(parse(ref), home, registry=registry, decrypt_keys=decrypt_keys,
                         need_plaintext=False) as opened:
        return _view(ref, opened.source, opened.checkpoint, opened.origin, home)


def _view(ref: str, source: BlobSource, checkpoint: Checkpoint, origin: str, home: Home) -> InspectView:
    processes: tuple[criu_images.Process, ...] = ()
    pages = checkpoint.layers(roles.PAGES)
    criu_layers = checkpoint.layers(roles.CRIU)
    if criu_layers and not any(mt.is_encrypted(layer.media_type) for layer in criu_layers):
        with home.workdir("inspect-") as work:
            for layer in criu_layers:
                unpack_layer(source, layer, work, tarball.CRIU_IMAGES)
            for layer in _pages_with_command_lines(work, pages):
                unpack_layer(source, layer, work, tarball.CRIU_IMAGES)
            processes = tuple(criu_images.process_tree(work))
    layers = tuple(LayerView(layer.annotations.get(ann.LAYER_ROLE, "?"), layer.media_type, layer.digest, layer.size)
                   for layer in checkpoint.manifest.layers)
    return InspectView(reference=ref, digest=checkpoint.descriptor.digest, config=checkpoint.config, layers=layers,
                       processes=processes, origin=origin)


def _pages_with_command_lines(images: Path, pages: list[Descriptor]) -> list[Descriptor]:
    """The pages layers to read for the processes' command lines (which live in their memory): the
    chunks that hold them, or, for memory not in chunks, all of it when it is small."""
    try:
        chunk_map = ChunkMap(pages)
    except (UsageError, CorruptData):
        return pages if sum(layer.size for layer in pages) <= SMALL_PAGES else []
    wanted: dict[str, Descriptor] = {}
    try:
        tree = criu_images.pstree_entries(images)  # ckpt's own decoder: pycriu costs 70 ms to import
    except (CorruptData, OSError):
        return []
    for pid, _, _ in tree:
        place = criu_images.command_line_place(images, pid)
        if place is not None:
            for chunk in chunk_map.covering(*place):
                wanted.setdefault(chunk.desc.digest, chunk.desc)
    return list(wanted.values())
