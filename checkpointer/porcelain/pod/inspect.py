"""`ckpt inspect REF` of a pod checkpoint: the pod as a tree of its members, each with its processes
and memory (read from its CRIU layer, as for a single checkpoint: from a registry only the configs
and CRIU layers move), which namespaces it owns or joins, and what the members share."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...format import pod as podfmt
from ...progress import noop
from ...reference import Ref
from ..home import Home
from ..inspect import InspectView, _view
from ..places import RegistryOptions
from .places import OpenedPod, open_pod


@dataclass(frozen=True, slots=True)
class MemberView:
    name: str
    id: str
    namespaces: Mapping[str, str]
    view: InspectView  # the member's checkpoint, as `ckpt inspect` shows a single one

    def owns(self) -> list[str]:
        return [kind for kind, owner in self.namespaces.items() if owner == podfmt.OWN]

    def joins(self) -> dict[str, str]:
        return {kind: owner for kind, owner in self.namespaces.items() if owner not in (podfmt.OWN, podfmt.HOST)}


@dataclass(frozen=True, slots=True)
class PodView:
    reference: str
    digest: str
    origin: str
    config: podfmt.PodConfig
    members: tuple[MemberView, ...]
    blobs: int  # distinct blobs of the members
    stored: int  # their bytes, each blob once
    shared: int  # bytes named by more than one member (stored once)

    @property
    def memory(self) -> int:
        return sum(m.view.memory for m in self.members)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "digest": self.digest, "origin": self.origin, "kind": "pod",
            "pod": self.config.to_json(),
            "members": [{"name": m.name, "id": m.id, "namespaces": dict(m.namespaces), **m.view.to_json()}
                        for m in self.members],
            "memory": self.memory, "blobs": self.blobs, "stored": self.stored, "shared": self.shared,
        }


def view_of(text: str, opened: OpenedPod, home: Home) -> PodView:
    pod = opened.pod
    members = []
    sizes: dict[str, int] = {}
    named = 0
    for member in pod.config.members:
        checkpoint = pod.checkpoints[member.name]
        view = _view(text, opened.source_for(checkpoint.descriptor), checkpoint, opened.origin, home)
        members.append(MemberView(member.name, member.id, member.namespaces, view))
        for blob in checkpoint.manifest.blobs():
            sizes[blob.digest] = blob.size
            named += blob.size
    stored = sum(sizes.values())
    return PodView(text, opened.descriptor.digest, opened.origin, pod.config, tuple(members), len(sizes), stored,
                   named - stored)


def inspect_if_pod(text: str, ref: Ref | None, *, home: Home | None = None,
                   registry: RegistryOptions | None = None) -> PodView | None:
    """What the pod checkpoint `text` (parsed: `ref`) holds; None when it is no pod."""
    home, registry = home or Home(), registry or RegistryOptions()
    with open_pod(text, ref, home, registry=registry, on_progress=noop) as opened:
        return view_of(text, opened, home) if opened is not None else None
