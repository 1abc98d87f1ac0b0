"""`ckpt push` and `ckpt pull`: copy a checkpoint between the store, layouts and registries."""
from __future__ import annotations

from dataclasses import dataclass

from ..format.read import open_checkpoint
from ..progress import OnProgress, noop
from ..reference import parse
from .home import Home, disk_errors
from .locations import RegistryOptions, default_store_ref, publish, resolve_source


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: str
    destination: str
    digest: str
    size: int


def copy(src: str, dest: str | None = None, *, home: Home | None = None,
         registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> CopyResult:
    """Copy the checkpoint `src` to `dest` (default: the local store under the source's name)."""
    home = home or Home()
    source = parse(src)
    target = parse(dest) if dest else default_store_ref(source)
    with disk_errors("could not copy the checkpoint"):
        layout, desc = resolve_source(source, home, registry=registry, on_progress=on_progress)
        checkpoint = open_checkpoint(layout, desc)  # refuse to copy what is not a checkpoint
        publish(layout, desc, target, registry=registry, on_progress=on_progress)
    size = checkpoint.manifest.total_size(desc.size)
    return CopyResult(source=str(source), destination=str(target), digest=desc.digest, size=size)
