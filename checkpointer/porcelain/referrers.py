"""Checkpoints as referrers of an image: `ckpt save --subject IMAGE` links a checkpoint to the
image it ran from, and `ckpt ls REG/REPO@DIGEST` lists an image's checkpoints (the registry's
referrers API where it has one, the `sha256-<hex>` tag schema where it does not)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..oci import mediatypes as mt
from ..oci.model import Descriptor
from ..reference import Ref, RegistryRef, parse
from .places import RegistryOptions
from .places.registry import client


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    artifact_type: str
    size: int
    created: str
    container: str


def subject_for(image: str, dests: list[Ref], *, registry: RegistryOptions = RegistryOptions()) -> Descriptor:
    """The manifest descriptor of `image`, which must live in the repository the checkpoint goes to
    (a subject names a manifest of the same repository)."""
    ref = parse(image)
    if not isinstance(ref, RegistryRef):
        raise UsageError(f"--subject {image!r} is not a registry image", hint="name it as HOST/REPO:TAG or @DIGEST")
    targets = [d for d in dests if isinstance(d, RegistryRef)]
    if not targets or any((d.host, d.repository) != (ref.host, ref.repository) for d in targets):
        raise UsageError("--subject must name an image in the repository the checkpoint is pushed to",
                         hint=f"push to {ref.host}/{ref.repository}:TAG")
    from ..registry.manifests import fetch_manifest

    got = fetch_manifest(client(ref, registry), ref.repository, ref.reference, expected=ref.digest)
    assert got is not None
    return Descriptor(got.media_type, got.digest, len(got.data))


def list_checkpoints_of(image: str, *, registry: RegistryOptions = RegistryOptions()) -> list[Referrer]:
    ref = parse(image)
    if not isinstance(ref, RegistryRef) or not ref.digest:
        raise UsageError(f"{image!r} names no image digest",
                         hint="list an image's checkpoints with REG/REPO@sha256:...")
    from ..registry import list_referrers

    found = list_referrers(ref, registry=client(ref, registry), artifact_type=mt.CHECKPOINT_ARTIFACT)
    return [Referrer(d.digest, d.artifact_type or "", d.size, d.annotations.get("org.opencontainers.image.created", ""),
                     d.annotations.get("org.criu.checkpoint.container.name", "")) for d in found]
