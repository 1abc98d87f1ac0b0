"""Where a container is restored when it is a member of a pod (porcelain/pod/): the namespaces of
the pod's new sandbox it joins, the annotations its spec gets, and whether ckpt holds the pod's
network lock for it (CRIU then takes none of its own: runtime/pod_lock.py)."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Placement:
    joins: Mapping[str, str] = field(default_factory=dict)  # runtime-spec namespace type -> path to join
    annotations: Mapping[str, str] = field(default_factory=dict)
    locked: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "joins", MappingProxyType(dict(self.joins)))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    def apply(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`spec` with every namespace in `joins` pointed at its new path, and the annotations set."""
        spec = copy.deepcopy(spec)
        linux = spec.setdefault("linux", {})
        namespaces = [ns for ns in linux.get("namespaces") or [] if isinstance(ns, dict)]
        for kind, path in self.joins.items():
            entry = next((ns for ns in namespaces if ns.get("type") == kind), None)
            if entry is None:
                namespaces.append({"type": kind, "path": path})
            else:
                entry["path"] = path
        linux["namespaces"] = namespaces
        if self.annotations:
            spec["annotations"] = {**(spec.get("annotations") or {}), **self.annotations}
        return spec
