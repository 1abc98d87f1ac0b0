"""The checkpoint config blob: what restore and host-compatibility checks need to know."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..criu.netns import NetworkState
from ..criu.options import CriuOptions
from ..errors import CorruptData
from ..host import HostInfo

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    engine: str  # what managed the container: runc, podman, process
    runtime: str  # the OCI runtime: runc
    runtime_version: str
    criu_version: str
    host: HostInfo
    container_id: str
    container_name: str
    created: str  # RFC 3339, UTC
    criu_options: CriuOptions = field(default_factory=CriuOptions)
    base_name: str | None = None
    base_digest: str | None = None
    ckpt_version: str = ""
    network: NetworkState | None = None  # None in checkpoints made before ckpt recorded it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "ckptVersion": self.ckpt_version,
            "created": self.created,
            "engine": self.engine,
            "runtime": {"name": self.runtime, "version": self.runtime_version},
            "criu": {"version": self.criu_version, "options": self.criu_options.to_json()},
            "host": {"arch": self.host.arch, "kernel": self.host.kernel,
                     "cgroupVersion": self.host.cgroup_version, "cpuFlags": list(self.host.cpu_flags)},
            "container": {"id": self.container_id, "name": self.container_name},
        }
        if self.network is not None:
            out["network"] = self.network.to_json()
        if self.base_name or self.base_digest:
            out["base"] = {k: v for k, v in (("name", self.base_name), ("digest", self.base_digest)) if v}
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CheckpointConfig:
        try:
            obj = json.loads(data)
            if obj.get("schemaVersion") != SCHEMA_VERSION:
                raise CorruptData(f"checkpoint config schemaVersion {obj.get('schemaVersion')!r} is not "
                                  f"{SCHEMA_VERSION}", hint="a newer ckpt may read it")
            host, runtime, criu, container = obj["host"], obj["runtime"], obj["criu"], obj["container"]
            base = obj.get("base") or {}
            return cls(
                engine=str(obj["engine"]), runtime=str(runtime["name"]),
                runtime_version=str(runtime.get("version", "")), criu_version=str(criu["version"]),
                host=HostInfo(arch=str(host["arch"]), kernel=str(host.get("kernel", "")),
                              cgroup_version=int(host.get("cgroupVersion", 0)),
                              cpu_flags=tuple(str(f) for f in host.get("cpuFlags", []))),
                container_id=str(container["id"]), container_name=str(container.get("name", container["id"])),
                created=str(obj.get("created", "")), criu_options=CriuOptions.from_json(criu.get("options")),
                base_name=base.get("name"), base_digest=base.get("digest"),
                ckpt_version=str(obj.get("ckptVersion", "")),
                network=NetworkState.from_json(obj["network"]) if obj.get("network") is not None else None,
            )
        except CorruptData:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CorruptData(f"checkpoint config is malformed: {exc!r}") from None
