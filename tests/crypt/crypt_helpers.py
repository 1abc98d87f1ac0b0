"""Helpers of the crypt tests: keys made with openssl, a checkpoint-shaped manifest in a layout,
and copies of a layout that hold one manifest's blobs only."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from checkpointer.format import pages, roles
from checkpointer.oci import annotations as ann
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor, Manifest

MARKER = b"CKPT-PLAINTEXT-MARKER-1f6b2d"
BIG = 5 << 20  # a multi-MiB pages chunk


@dataclass(frozen=True)
class KeySet:
    rsa_pub: Path
    rsa_key: Path
    ec_pub: Path
    ec_key: Path  # PKCS#8: what skopeo 1.9 (ocicrypt) reads; SEC1 "EC PRIVATE KEY" it does not
    ec_key_sec1: Path
    other_key: Path  # a third party's RSA key, for "wrong key"
    other_pub: Path


def openssl(*args: str) -> None:
    if not shutil.which("openssl"):
        raise AssertionError("the crypt tests need openssl (scripts/setup.sh --test installs it)")
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_keys(directory: Path) -> KeySet:
    d = directory
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "rsa.pem"))
    openssl("pkey", "-in", str(d / "rsa.pem"), "-pubout", "-out", str(d / "rsa.pub"))
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "ec-sec1.pem"))
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(d / "ec-sec1.pem"), "-out", str(d / "ec.pem"))
    openssl("pkey", "-in", str(d / "ec.pem"), "-pubout", "-out", str(d / "ec.pub"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "other.pem"))
    openssl("pkey", "-in", str(d / "other.pem"), "-pubout", "-out", str(d / "other.pub"))
    return KeySet(d / "rsa.pub", d / "rsa.pem", d / "ec.pub", d / "ec.pem", d / "ec-sec1.pem",
                  d / "other.pem", d / "other.pub")


def layer_bytes(name: str, size: int) -> bytes:
    """Deterministic bytes with the marker in them, in clear, several times."""
    seed = (name.encode() + b"|") * 64
    body = (MARKER + seed) * (size // (len(MARKER) + len(seed)) + 1)
    return body[:size]


def make_checkpoint(layout: Layout, *, pages_media_type: str = pages.MEDIA_TYPE,
                    big: int = BIG) -> tuple[Descriptor, dict[str, bytes]]:
    """A checkpoint-shaped manifest (config, criu, two pages chunks, rootfs, spec): its descriptor
    and the plaintext of each layer by digest."""
    plain: dict[str, bytes] = {}

    def put(data: bytes, media_type: str, annotations: dict[str, str]) -> Descriptor:
        desc = layout.put_bytes(data, media_type, annotations)
        plain[desc.digest] = data
        return desc

    config = layout.put_bytes(b'{"schemaVersion":1,"engine":"runc","container":{"id":"web-1"}}',
                              mt.CHECKPOINT_CONFIG)
    chunk = {pages.FILE_KEY: "pages-1.img", pages.LENGTH_KEY: str(big)}
    layers = (
        put(layer_bytes("criu", 40_000), mt.LAYER_TAR_ZSTD, {ann.LAYER_ROLE: roles.CRIU}),
        put(layer_bytes("pages-a", big), pages_media_type,
            {ann.LAYER_ROLE: roles.PAGES, **chunk, pages.OFFSET_KEY: "0"}),
        put(layer_bytes("pages-b", 300_001), pages_media_type,
            {ann.LAYER_ROLE: roles.PAGES, **chunk, pages.OFFSET_KEY: str(big)}),
        put(layer_bytes("rootfs", 120_000), mt.LAYER_TAR_ZSTD, {ann.LAYER_ROLE: roles.ROOTFS}),
        put(b'{"ociVersion":"1.0.2","process":{"env":["SECRET=' + MARKER + b'"]}}', mt.RUNTIME_SPEC,
            {ann.LAYER_ROLE: roles.SPEC}),
    )
    manifest = Manifest(config, layers, {ann.CRIU_CONTAINER_NAME: "web", ann.CRIU_HOST_ARCH: "amd64"},
                        artifact_type=mt.CHECKPOINT_ARTIFACT)
    return layout.put_manifest(manifest), plain


def blob_names(layout: Layout) -> set[str]:
    return set(os.listdir(layout.root / "blobs" / "sha256"))


def ingest_names(layout: Layout) -> list[str]:
    return os.listdir(layout.root / "ingest")


def isolate(layout: Layout, desc: Descriptor, dest: Path) -> Layout:
    """A new layout at `dest` with only `desc` and its blobs (no plaintext left over from before)."""
    out = Layout(dest, create=True)
    manifest = layout.read_manifest(desc)
    for blob in (desc, *manifest.blobs()):
        shutil.copyfile(layout.blob_path(blob.digest), out.blob_path(blob.digest))
    return out


def replace_layer(layout: Layout, desc: Descriptor, index: int, layer: Descriptor) -> Descriptor:
    """A new manifest in `layout` like `desc` but with layer `index` replaced."""
    manifest = layout.read_manifest(desc)
    layers = list(manifest.layers)
    layers[index] = layer
    return layout.put_manifest(Manifest(manifest.config, tuple(layers), manifest.annotations,
                                        manifest.artifact_type, manifest.subject, manifest.media_type))
