"""`ckpt convert` and `ckpt export`: read a checkpoint in any format ckpt knows and write it in the
shape asked for: ckpt's own, an image Podman or CRI-O restores, or an engine's archive file."""
from __future__ import annotations

from dataclasses import dataclass

from ..compat.writers import check_compat, write_compat
from ..errors import UsageError
from ..format.read import open_checkpoint
from ..progress import OnProgress, noop
from ..reference import ArchiveRef, parse
from .home import Home, disk_errors
from .places import RegistryOptions, copy_blobs, open_sink, read_checkpoint


@dataclass(frozen=True, slots=True)
class ConvertResult:
    source: str
    destination: str
    origin: str  # the source's format: ckpt, podman-image, cri-o-archive, ...
    compat: str  # the shape written
    digest: str
    size: int


def convert(src: str, dest: str, *, compat: str = "ckpt", home: Home | None = None,
            registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> ConvertResult:
    """Convert the checkpoint `src` into `compat` shape at `dest`. The result also stays in the local
    store (untagged unless `dest` is a store name), where `ckpt rm`/gc can reclaim it."""
    home = home or Home()
    check_compat(compat)
    source_ref, target = parse(src), parse(dest)
    sink = open_sink(target, home, registry=registry, on_progress=on_progress)
    with read_checkpoint(source_ref, home, registry=registry, on_progress=on_progress) as opened:
        layout, store, checkpoint = opened.source.complete(), home.store(), opened.checkpoint
        with disk_errors("could not convert the checkpoint"):
            if layout.root != store.root:
                copy_blobs(layout, store, checkpoint.descriptor)
            desc = write_compat(store, open_checkpoint(store, checkpoint.descriptor), compat, on_progress=on_progress)
            sink.publish(store, desc)
        if isinstance(target, ArchiveRef):
            size = target.path.stat().st_size
        else:
            size = store.read_manifest(desc).total_size(desc.size)
        return ConvertResult(source=str(source_ref), destination=str(target), origin=opened.origin, compat=compat,
                             digest=desc.digest, size=size)


def export(src: str, path: str, *, home: Home | None = None, registry: RegistryOptions = RegistryOptions(),
           on_progress: OnProgress = noop) -> ConvertResult:
    """Write the checkpoint `src` as an engine's archive (PATH.tar, .tar.gz, .tar.zst) that
    `podman container restore --import` and `checkpointctl show` read."""
    if not isinstance(parse(path), ArchiveRef):
        raise UsageError(f"{path!r} is not an archive path", hint="name it PATH.tar, PATH.tar.gz or PATH.tar.zst")
    return convert(src, path, compat="ckpt", home=home, registry=registry, on_progress=on_progress)
