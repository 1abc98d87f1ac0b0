"""The errors of layer encryption. Each derives from the class in checkpointer.errors whose exit code
fits: a key the user gave that cannot do the job is a usage error, damaged or forged data is
CorruptData."""
from __future__ import annotations

from ..errors import CorruptData, UsageError


class KeyFileError(UsageError):
    """A key file is missing, unreadable, of an unsupported kind, or its passphrase is wrong."""


class KeyRequired(UsageError):
    """The checkpoint is encrypted and no private key was given."""


class WrongKey(UsageError):
    """None of the private keys given can unwrap a layer's key: the checkpoint was encrypted to others."""


class AlreadyEncrypted(UsageError):
    """A layer chosen for encryption is encrypted already."""


class UnsupportedEncryption(CorruptData):
    """A layer is encrypted with a scheme or cipher ckpt does not implement (pgp, pkcs7, a key provider)."""


class TamperedLayer(CorruptData):
    """An encrypted layer fails authentication: its ciphertext, options or wrapped key were changed."""
