"""Encrypting and decrypting one layer blob inside a layout, streaming, never committing a blob
that is not whole and verified."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..oci import annotations as ann
from ..oci.layout import Layout
from ..oci.model import Descriptor
from . import keywrap, spec, stream
from .errors import KeyRequired, TamperedLayer, UnsupportedEncryption, WrongKey
from .keys import PublicKey
from .options import PrivateOptions, PublicOptions


@dataclass(frozen=True, slots=True)
class LayerSecrets:
    """What unwrapping a layer's key gives: enough to decrypt and check it."""

    private: PrivateOptions
    public: PublicOptions


def describe(desc: Descriptor) -> str:
    role = desc.annotations.get(ann.LAYER_ROLE)
    return f"layer {desc.digest[:19]}" + (f" ({role})" if role else "")


def encrypt_layer(layout: Layout, desc: Descriptor, recipients: Sequence[PublicKey]) -> Descriptor:
    """A new blob in `layout`: `desc`'s blob encrypted under a fresh key wrapped for `recipients`.
    The plaintext's digest is checked as it is read; nothing is committed if it is wrong."""
    symkey = os.urandom(spec.KEY_BYTES)
    nonce = os.urandom(spec.NONCE_BYTES)
    media_type = spec.encrypted_media_type(desc.media_type)
    with layout.open_blob(desc) as src, layout.writing() as dst:
        # Reading to EOF makes the VerifyingReader check the plaintext's size and digest.
        mac = stream.encrypt(src, dst, symkey, nonce)
        private = PrivateOptions(symkey, nonce, desc.digest)
        annotations = {
            **spec.without_encryption_annotations(desc.annotations),
            spec.KEYS_JWE: keywrap.wrap(private.to_bytes(), recipients),
            spec.PUBOPTS: PublicOptions(spec.CIPHER, mac).to_annotation(),
        }
        encrypted = dst.commit(media_type, annotations)
    return Descriptor(media_type, encrypted.digest, encrypted.size, annotations,
                      artifact_type=desc.artifact_type, platform=desc.platform)


def unwrap_layer(desc: Descriptor, keys: Sequence[keywrap.Unwrapper]) -> LayerSecrets:
    """The layer's key and options, authenticated by the JWE; raises a clear error when no key fits."""
    what = describe(desc)
    wrapped = desc.annotations.get(spec.KEYS_JWE)
    if not wrapped:
        others = sorted(k[len(spec.KEYS_PREFIX):] for k in desc.annotations if k.startswith(spec.KEYS_PREFIX))
        if others:
            raise UnsupportedEncryption(
                f"{what} is encrypted for {', '.join(others)} keys, which ckpt cannot use",
                hint="decrypt it with skopeo copy --decryption-key, or re-encrypt it to a jwe recipient")
        raise TamperedLayer(f"{what} is marked encrypted but carries no wrapped key ({spec.KEYS_JWE})")
    public = PublicOptions.from_annotation(desc.annotations.get(spec.PUBOPTS), what)
    if not keys:
        raise KeyRequired(f"the checkpoint is encrypted ({what} and maybe others)",
                          hint="give the private key of one of its recipients (--decrypt-key)")
    plaintext = keywrap.unwrap(wrapped, keys, what)
    if plaintext is None:
        algs = ", ".join(keywrap.algorithms(wrapped)) or "unknown"
        tried = ", ".join(f"{k.key.source} ({k.key.kind})" for k in keys)
        raise WrongKey(f"none of the keys given can decrypt {what}; tried {tried}",
                       hint=f"it was encrypted to other keys (recipients use {algs}); give the private key "
                            "of one of the recipients it was encrypted to")
    return LayerSecrets(PrivateOptions.from_bytes(plaintext, what), public)


def verify_layer(layout: Layout, desc: Descriptor, secrets: LayerSecrets) -> None:
    """Everything decrypt_layer checks (ciphertext digest, HMAC, plaintext digest), writing nothing."""
    _decrypt(layout, desc, secrets, stream.Discard())


def decrypt_layer(layout: Layout, desc: Descriptor, secrets: LayerSecrets) -> Descriptor:
    """A new blob in `layout`: the plaintext of `desc`, committed only once the ciphertext's HMAC
    and the plaintext's digest recorded in the private options have both been checked."""
    media_type = spec.decrypted_media_type(desc.media_type)
    with layout.writing(known_digest=secrets.private.digest) as dst:
        _decrypt(layout, desc, secrets, dst)
        annotations = spec.without_encryption_annotations(desc.annotations)
        plain = dst.commit(media_type, annotations)
    return Descriptor(media_type, plain.digest, plain.size, annotations,
                      artifact_type=desc.artifact_type, platform=desc.platform)


def _decrypt(layout: Layout, desc: Descriptor, secrets: LayerSecrets, dst: stream.Sink) -> None:
    private = secrets.private
    with layout.open_blob(desc) as src:
        # Reading to EOF makes the VerifyingReader check the ciphertext blob's own size and digest.
        authentic, digest = stream.decrypt(src, dst, private.symkey, private.nonce, secrets.public.hmac)
    if not authentic:
        raise TamperedLayer(f"{describe(desc)} fails authentication: its ciphertext or its HMAC was changed",
                            hint="fetch the checkpoint again; if this persists, it was tampered with")
    if digest != private.digest:
        raise TamperedLayer(f"{describe(desc)} decrypts to {digest}, "
                            f"not the {private.digest} recorded with its key")
