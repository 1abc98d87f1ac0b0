"""What happens to a packed checkpoint between write_checkpoint and its destinations: nothing, a
conversion into the shape another engine restores (--compat), or encryption (--encrypt-to)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress
from .home import disk_errors


@dataclass(frozen=True, slots=True)
class Output:
    compat: str | None = None  # ckpt (None), or podman, cri-o, kubernetes (compat/writers.py)
    encrypt_to: tuple[Any, ...] = ()  # public keys: every layer is encrypted before it leaves the host

    @property
    def plain(self) -> bool:
        """The checkpoint leaves as it was packed (so its blobs can be uploaded while it is packed)."""
        return self.compat in (None, "ckpt") and not self.encrypt_to

    def check(self) -> None:
        """Refuse what cannot be done, before anything is frozen."""
        if self.encrypt_to and self.compat not in (None, "ckpt"):
            raise UsageError("--encrypt-to cannot be combined with --compat",
                             hint="encrypt the ckpt-format checkpoint, or convert it first and encrypt with skopeo")
        if self.compat not in (None, "ckpt"):
            from ..compat.writers import check_compat

            check_compat(self.compat)


@contextmanager
def transformed(layout: Layout, desc: Descriptor, output: Output, on_progress: OnProgress) -> Iterator[Descriptor]:
    """The checkpoint `desc` in `layout` as it is to be published. Encrypted, the plaintext blobs are
    dropped from `layout` when the block ends: memory in clear stays on this disk no longer than needed."""
    if output.encrypt_to:
        from ..crypt import encrypt_manifest

        plaintext = {b.digest for b in layout.read_manifest(desc).layers} | {desc.digest}
        try:
            with disk_errors("could not encrypt the checkpoint"):
                encrypted = encrypt_manifest(layout, desc, output.encrypt_to)
            yield encrypted
        finally:
            layout.discard(plaintext)
        return
    if not output.plain:
        from ..compat.writers import write_compat
        from ..format.read import open_checkpoint

        with disk_errors("could not convert the checkpoint"):
            desc = write_compat(layout, open_checkpoint(layout, desc), output.compat or "ckpt",
                                on_progress=on_progress)
    yield desc
