"""Encrypting and decrypting a whole checkpoint manifest inside a layout.

Layers become ocicrypt-encrypted blobs (`<media type>+encrypted`, the wrapped key and public
options in annotations). The config blob and the manifest's annotations stay in clear: restore
reads the config to check the host before it needs any key, and they hold no memory. The new
manifest is stored, not tagged.

Decryption commits no plaintext unless every encrypted layer is authentic: it unwraps every
layer's key first, then checks the HMAC and plaintext digest of every layer but the first
(decrypting to nowhere), then decrypts each layer to an uncommitted blob that is committed only
once its own HMAC and plaintext digest check out. So decrypting reads most layers twice.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import UsageError
from ..format import roles as layer_roles
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import MAX_MANIFEST_BYTES, Descriptor, Manifest
from . import keywrap, spec
from .errors import AlreadyEncrypted
from .keys import PrivateKey, PublicKey
from .keywrap import Unwrapper
from .layer import LayerSecrets, decrypt_layer, describe, encrypt_layer, unwrap_layer, verify_layer


def is_encrypted(manifest: Manifest) -> bool:
    """Whether any layer of `manifest` is encrypted (so decrypt_manifest must run before use)."""
    return manifest.encrypted


def encrypt_manifest(layout: Layout, manifest_desc: Descriptor, recipients: Sequence[PublicKey], *,
                     roles: Iterable[str] | None = None) -> Descriptor:
    """Encrypt every layer (or those whose `dev.ckpt.layer.role` is in `roles`) to `recipients`;
    returns the descriptor of the new manifest, stored in `layout` and not tagged."""
    recipients = list(recipients)
    if not recipients:
        raise UsageError("encryption needs at least one recipient", hint="give a public key (--encrypt-to)")
    chosen = _roles(roles)
    manifest = layout.read_manifest(manifest_desc)
    picked = [_picked(layer, chosen) for layer in manifest.layers]
    if not any(picked):
        raise UsageError(f"no layer of {manifest_desc.digest} has a role in {sorted(chosen or ())}",
                         hint=f"roles are {', '.join(layer_roles.ALL)}")
    for layer, pick in zip(manifest.layers, picked, strict=True):
        if pick and spec.is_encrypted_media_type(layer.media_type):
            raise AlreadyEncrypted(f"{describe(layer)} is encrypted already",
                                   hint="decrypt the checkpoint first to encrypt it to other recipients")
    _check_size(len(manifest.to_bytes()) + sum(picked) * keywrap.overhead(recipients))  # before the work
    # A failure part way leaves only ciphertext blobs that nothing references: gc() takes them.
    layers = [encrypt_layer(layout, layer, recipients) if pick else layer
              for layer, pick in zip(manifest.layers, picked, strict=True)]
    return layout.put_manifest(_with_layers(manifest, layers))


def decrypt_manifest(layout: Layout, manifest_desc: Descriptor, keys: Sequence[PrivateKey]) -> Descriptor:
    """Decrypt every encrypted layer with whichever of `keys` opens it; returns the descriptor of
    the new plaintext manifest, stored in `layout` and not tagged (`manifest_desc` itself when no
    layer is encrypted). Every key is unwrapped before any blob is written, so a wrong or missing
    key leaves the layout as it was."""
    manifest = layout.read_manifest(manifest_desc)
    if not is_encrypted(manifest):
        return manifest_desc
    unwrappers = [Unwrapper.of(key) for key in keys]
    secrets: list[LayerSecrets | None] = [
        unwrap_layer(layer, unwrappers) if spec.is_encrypted_media_type(layer.media_type) else None
        for layer in manifest.layers]
    encrypted = [(layer, secret) for layer, secret in zip(manifest.layers, secrets, strict=True) if secret]
    for layer, secret in encrypted[1:]:  # the first one is checked as it is decrypted, before any commit
        verify_layer(layout, layer, secret)
    layers = [decrypt_layer(layout, layer, secret) if secret else layer
              for layer, secret in zip(manifest.layers, secrets, strict=True)]
    return layout.put_manifest(_with_layers(manifest, layers))


def _roles(roles: Iterable[str] | None) -> frozenset[str] | None:
    if roles is None:
        return None
    chosen = frozenset(roles)
    unknown = sorted(chosen - set(layer_roles.ALL))
    if unknown:
        raise UsageError(f"unknown layer role {', '.join(unknown)}",
                         hint=f"roles are {', '.join(layer_roles.ALL)}")
    return chosen


def _picked(layer: Descriptor, chosen: frozenset[str] | None) -> bool:
    if layer.media_type == mt.OCI_EMPTY:
        return False
    return chosen is None or layer.annotations.get(ann.LAYER_ROLE) in chosen


def _with_layers(manifest: Manifest, layers: list[Descriptor]) -> Manifest:
    new = Manifest(manifest.config, tuple(layers), manifest.annotations, manifest.artifact_type,
                   manifest.subject, manifest.media_type)
    _check_size(len(new.to_bytes()))
    return new


def _check_size(size: int) -> None:
    if size > MAX_MANIFEST_BYTES:
        raise UsageError(f"the encrypted manifest would be about {size} bytes, more than the "
                         f"{MAX_MANIFEST_BYTES} registries accept",
                         hint="encrypt to fewer recipients, or save with fewer, larger pages chunks")
