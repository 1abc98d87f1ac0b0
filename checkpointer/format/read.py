"""Open a checkpoint and unpack its layers, verifying every digest, from a BlobSource (source.py):
a Layout, or a registry source that fetches each blob the first time it is read."""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from ..errors import CorruptData, UsageError
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci import tarball
from ..oci.digest import VerifyingReader
from ..oci.model import Descriptor, Manifest
from ..progress import OnProgress, noop
from . import pages as pages_format
from . import roles
from .config import CheckpointConfig
from .source import BlobSource


@dataclass(frozen=True, slots=True)
class Checkpoint:
    descriptor: Descriptor
    manifest: Manifest
    config: CheckpointConfig

    def layers(self, role: str) -> list[Descriptor]:
        """The layers of `role`, in manifest order (a role may be split over several)."""
        return [layer for layer in self.manifest.layers if layer.annotations.get(ann.LAYER_ROLE) == role]

    def images_size(self) -> int:
        """About how many bytes the CRIU image directory takes once unpacked."""
        return sum(int(layer.annotations.get(pages_format.LENGTH_KEY, layer.size))
                   for role in (roles.CRIU, roles.PAGES) for layer in self.layers(role))

    def layer(self, role: str) -> Descriptor | None:
        found = self.layers(role)
        return found[0] if found else None


def is_checkpoint(manifest: Manifest) -> bool:
    return manifest.artifact_type == mt.CHECKPOINT_ARTIFACT or manifest.config.media_type == mt.CHECKPOINT_CONFIG


def open_checkpoint(source: BlobSource, desc: Descriptor) -> Checkpoint:
    """The checkpoint whose manifest is `desc`: its manifest and config are read, nothing else."""
    manifest = source.read_manifest(desc)
    if not is_checkpoint(manifest):
        raise UsageError(f"{desc.digest} is not a ckpt checkpoint (artifactType "
                         f"{manifest.artifact_type or manifest.config.media_type!r})",
                         hint="checkpoints of other engines are read by `ckpt convert`")
    config = CheckpointConfig.from_bytes(source.read_blob(manifest.config))
    return Checkpoint(desc, manifest, config)


def _decompressed(media_type: str, verified: VerifyingReader) -> BinaryIO:
    raw = cast(BinaryIO, verified)  # zstandard, gzip and tar only read() from it
    if media_type.endswith("+zstd"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if media_type.endswith("+gzip"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if media_type.endswith(".tar"):
        return raw
    if mt.is_encrypted(media_type):
        raise UsageError("this layer is encrypted", hint="give the private key with --decrypt-key KEY.pem")
    raise CorruptData(f"layer media type {media_type!r} is not a tar this version can unpack")


def unpack_images(source: BlobSource, checkpoint: Checkpoint, images: Path, *, on_progress: OnProgress = noop,
                  placed: frozenset[str] = frozenset()) -> None:
    """Unpack the CRIU image directory (the `criu` and `pages` roles) into `images`. `placed` are the
    digests of pages chunks already written there (while they were being pulled)."""
    for layer in checkpoint.layers(roles.CRIU):
        unpack_layer(source, layer, images, tarball.CRIU_IMAGES)
    pages = checkpoint.layers(roles.PAGES)
    chunks = [layer for layer in pages if layer.media_type == pages_format.MEDIA_TYPE]
    if chunks and placed:
        rest = [c for c in chunks if c.digest not in placed]
        if rest:
            pages_format.unpack_pages(source, rest, images, complete=False, on_progress=on_progress)
        pages_format.check_placed(chunks, images)
    elif chunks:
        pages_format.unpack_pages(source, chunks, images, on_progress=on_progress)
    for layer in pages:
        if layer.media_type != pages_format.MEDIA_TYPE:
            unpack_layer(source, layer, images, tarball.CRIU_IMAGES)


def unpack_layer(source: BlobSource, desc: Descriptor, dest: Path, policy: tarball.UnpackPolicy) -> None:
    """Unpack a tar layer (or a pages chunk) into `dest`; the blob's digest is checked before this returns."""
    if desc.media_type == pages_format.MEDIA_TYPE:
        pages_format.unpack_pages(source, [desc], dest, complete=False)
        return
    with source.open_blob(desc) as verified:
        unpack_stream(_decompressed(desc.media_type, verified), dest, policy, what=f"layer {desc.digest}")
        verified.drain()


def unpack_stream(stream: BinaryIO, dest: Path, policy: tarball.UnpackPolicy, *, what: str) -> None:
    """Unpack a decompressing tar stream into `dest`. A decompression bomb fails fast with a clear
    error instead of filling the disk; bad compression is CorruptData, a disk problem an OSError."""
    st = os.statvfs(dest)
    policy = replace(policy, max_bytes=min(policy.max_bytes, st.f_bavail * st.f_frsize))
    try:
        tarball.unpack(stream, dest, policy)
    except zstandard.ZstdError as exc:
        raise CorruptData(f"{what} is not valid zstd: {exc}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise CorruptData(f"{what} cannot be decompressed: {exc}") from None
