"""The container being checkpointed: its annotations, bundle, spec and rootfs, asked of runc.

At post-dump time runc still knows the container (its processes are frozen, not yet killed), so
`runc state` answers, the bundle's config.json is there and the rootfs is still mounted.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RuntimeFailed
from ..runtime.runc import Runc, rootfs_of
from . import keys
from .procfs import RuncCall


@dataclass(frozen=True, slots=True)
class Target:
    container_id: str
    name: str
    engine: str  # what manages the container: runc, podman, cri-o, containerd
    bundle: Path
    rootfs: Path
    annotations: dict[str, str]
    spec: bytes  # the bundle's config.json as it is
    image: str = ""  # the image the container runs, when its manager says


def annotations_of(call: RuncCall) -> tuple[Runc, dict[str, str], Path]:
    """(runc, the container's annotations, its bundle): the cheap first look."""
    binary = call.binary if os.access(call.binary, os.X_OK) else "runc"  # "(deleted)" after an upgrade
    runc = Runc(root=call.root, binary=binary)
    state = runc.state(call.container_id)
    return runc, dict(state.annotations), state.bundle


def describe(call: RuncCall, annotations: dict[str, str], bundle: Path) -> Target:
    try:
        spec = (bundle / "config.json").read_bytes()
        parsed = json.loads(spec)
    except (OSError, ValueError) as exc:
        raise RuntimeFailed(f"cannot read the runtime spec of {call.container_id} in {bundle}: {exc}") from None
    name = next((annotations[k] for k in keys.NAME_ANNOTATIONS if annotations.get(k)), call.container_id)
    image = next((annotations[k] for k in keys.IMAGE_ANNOTATIONS if annotations.get(k)), "")
    return Target(container_id=call.container_id, name=name, engine=engine_of(annotations, call.parent),
                  bundle=bundle, rootfs=rootfs_of(bundle, parsed), annotations=annotations, spec=spec, image=image)


def engine_of(annotations: dict[str, str], parent: tuple[str, ...]) -> str:
    manager = annotations.get("io.container.manager", "")
    if manager == "libpod":
        return "podman"
    if manager == "cri-o":
        return "cri-o"
    if "io.kubernetes.cri.container-type" in annotations:
        return "containerd"
    caller = os.path.basename(parent[0]) if parent else ""
    for engine, prefix in (("podman", "podman"), ("cri-o", "crio"), ("containerd", "containerd")):
        if caller.startswith(prefix):
            return engine
    return "runc"
