"""The names the OCI image encryption scheme of containers/ocicrypt defines (used by skopeo, Podman,
CRI-O and containerd imgcrypt): media type suffix, annotation keys and the one layer cipher."""
from __future__ import annotations

from collections.abc import Mapping

from ..oci import mediatypes as mt

ENCRYPTED_SUFFIX = mt.ENCRYPTED_SUFFIX

ANNOTATION_PREFIX = "org.opencontainers.image.enc."
KEYS_PREFIX = ANNOTATION_PREFIX + "keys."
KEYS_JWE = KEYS_PREFIX + "jwe"  # comma-separated base64 JWEs, each wrapping the private options
PUBOPTS = ANNOTATION_PREFIX + "pubopts"  # base64 JSON: cipher name and HMAC

# The only layer cipher ocicrypt defines: AES-256 in CTR mode over the whole blob, then
# HMAC-SHA256 (keyed with the same 32-byte key) over the ciphertext.
CIPHER = "AES_256_CTR_HMAC_SHA256"
KEY_BYTES = 32
NONCE_BYTES = 16  # the initial 128-bit counter block
HMAC_BYTES = 32

# JWE algorithms accepted when unwrapping. ocicrypt writes RSA-OAEP and ECDH-ES+A256KW with
# A256GCM; RSA1_5 (padding oracles), PBES2 (password-based, costly) and symmetric wrapping are refused.
JWE_KEY_ALGS = ("RSA-OAEP", "RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW")
JWE_CONTENT_ALGS = ("A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512")
JWE_CONTENT_ALG = "A256GCM"


def encrypted_media_type(media_type: str) -> str:
    return media_type + ENCRYPTED_SUFFIX


def is_encrypted_media_type(media_type: str) -> bool:
    return mt.is_encrypted(media_type)


def decrypted_media_type(media_type: str) -> str:
    return media_type[: -len(ENCRYPTED_SUFFIX)] if is_encrypted_media_type(media_type) else media_type


def without_encryption_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if not k.startswith(ANNOTATION_PREFIX)}
