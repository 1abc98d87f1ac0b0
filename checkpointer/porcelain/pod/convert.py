"""`ckpt convert` of a pod: another engine's pod checkpoint into ckpt's pod format (and any place
ckpt writes to), or a ckpt pod that came from CRI-O or containerd back into their layout
(compat/pod_write.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...compat import pod_write
from ...errors import UsageError
from ...progress import OnProgress, noop
from ..home import Home, disk_errors
from ..places import RegistryOptions
from . import places


@dataclass(frozen=True, slots=True)
class PodConvertResult:
    source: str
    destination: str
    origin: str  # the source's format: ckpt, pod-archive, cri-o-pod, containerd-pod
    compat: str  # the shape written
    digest: str
    size: int
    members: tuple[str, ...]


def convert_if_pod(src: str, dest: str, *, compat: str = "ckpt", home: Home | None = None,
                   registry: RegistryOptions | None = None, on_progress: OnProgress = noop) -> PodConvertResult | None:
    """Convert the pod `src` names into `compat` at `dest`; None, doing nothing, when `src` is no pod."""
    home, registry = home or Home(), registry or RegistryOptions()
    with places.open_pod(src, places.ref_or_path(src), home, registry=registry, on_progress=on_progress) as opened:
        if opened is None:
            return None
        members = tuple(m.name for m in opened.pod.config.members)
        layout = opened.complete()
        if compat in (None, "ckpt"):
            target = places.ref_or_path(dest)
            if target is None:
                raise UsageError(f"{dest!r} is no REF to write a pod checkpoint to")
            places.publish(target, layout, opened.descriptor, home, registry, on_progress)
            size, _ = places.stored_sizes(layout, opened.descriptor)
        elif compat in pod_write.SHAPES:
            with disk_errors(f"could not write {dest}"):
                size = pod_write.write_pod_layout(layout, opened.pod, compat, Path(dest), on_progress=on_progress)
        else:
            raise UsageError(f"--compat {compat} makes a single container's image; a pod converts to ckpt, "
                             f"{', '.join(pod_write.SHAPES)}")
        return PodConvertResult(source=src, destination=dest, origin=opened.origin, compat=compat or "ckpt",
                                digest=opened.descriptor.digest, size=size, members=members)
