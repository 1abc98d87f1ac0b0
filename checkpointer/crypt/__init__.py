"""OCI layer encryption as containers/ocicrypt defines it (skopeo, Podman, CRI-O and containerd
imgcrypt read and write it): AES-256-CTR + HMAC-SHA256 per layer, the layer key wrapped in a JWE
for each recipient's RSA or EC public key. docs/security.md describes the scheme and its limits."""
from .errors import AlreadyEncrypted, KeyFileError, KeyRequired, TamperedLayer, UnsupportedEncryption, WrongKey
from .keys import PrivateKey, PublicKey, load_private_key, load_public_key
from .manifest import decrypt_manifest, encrypt_manifest, is_encrypted

__all__ = [
    "AlreadyEncrypted", "KeyFileError", "KeyRequired", "PrivateKey", "PublicKey", "TamperedLayer",
    "UnsupportedEncryption", "WrongKey", "decrypt_manifest", "encrypt_manifest", "is_encrypted",
    "load_private_key", "load_public_key",
]
