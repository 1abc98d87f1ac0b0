"""`ckpt push` and `ckpt pull`: copy a checkpoint between the store, layouts and registries."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..format.read import open_checkpoint
from ..progress import OnProgress, noop
from ..reference import ArchiveRef, parse
from .home import Home, disk_errors
from .places import RegistryOptions, local_name_for, open_sink, open_source


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
    source_ref = parse(src)
    if isinstance(source_ref, ArchiveRef):
        raise UsageError(f"{source_ref} is a checkpoint archive, which `ckpt convert` reads",
                         hint=f"ckpt convert {src} DEST")
    target = parse(dest) if dest else local_name_for(source_ref)
    from .pod.convert import convert_if_pod

    if pod := convert_if_pod(src, str(target), home=home, registry=registry, on_progress=on_progress):
        return CopyResult(source=str(source_ref), destination=str(target), digest=pod.digest, size=pod.size)
    sink = open_sink(target, home, registry=registry, on_progress=on_progress)
    with disk_errors("could not copy the checkpoint"), \
            open_source(source_ref, home, registry=registry, on_progress=on_progress) as source:
        layout, desc = source.complete(), source.descriptor
        checkpoint = open_checkpoint(layout, desc)  # refuse to copy what is not a checkpoint
        sink.publish(layout, desc)
    size = checkpoint.manifest.total_size(desc.size)
    return CopyResult(source=str(source_ref), destination=str(target), digest=desc.digest, size=size)
