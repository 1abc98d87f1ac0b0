"""Build other engines' pod checkpoints to the layouts their sources write, independently of ckpt's
own code (plain tarfile, json, hashlib), from the single-container archives of formats.py:

- CRI-O's first pod checkpoint (cri-o PR 9758, internal/lib/checkpoint.go PodCheckpoint): one tar
  (archive.TarWithOptions, IncludeSourceDir) of `pod.options` and `<id>-<full name>/` directories;
  pod.options keys the containers by their short CRI name. No pod.dump.
- containerd's first (containerd PR 12932, sandbox_checkpoint_linux.go): the same tar, built with
  archive.Diff (entries relative to the root), pod.options keyed by containerd's full name
  `<container>_<pod>_<namespace>_<uid>_<attempt>`, and pod.dump (the CRI PodSandboxConfig).
- CRI-O's CheckpointPod (cri-o PR 10313, server/pod_checkpoint.go): a directory with
  checkpoint-manifest.json (version 1, runtime, runtimeHandler, sandboxId, containers[name, id,
  archive, sha256, config]), pod-config.json and containers/<hex sha256(id)>.tar.
- containerd's CheckpointPod (containerd PR 13822, podsandbox/sandbox_checkpoint_linux.go): a
  directory with checkpoint-manifest.json (version 2, sandboxId, containers[name, id, archive,
  config, status]), pod-config.json and container-<hex sha256(id)>.tar, an OCI layout whose
  index.json names the container's checkpoint index (the legacy `ctr checkpoint` index).

Every member's spec joins the pause container's network, ipc and uts namespaces by path, as both
engines' specs do."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

from formats import _blob, containerd_archive_dir, containerd_legacy, crio_archive_dir, proto_any, spec, tar_dir

POD, NAMESPACE, UID, SANDBOX = "shop", "default", "6c1d2b7e-0d1f-4a8e-9b59-0f6c3f0a1e22", "9a8b" * 16
MEMBERS = {"web": "1111" * 16, "cache": "2222" * 16}
ANNOTATIONS = {"org.criu.checkpoint.pod.name": POD, "org.criu.checkpoint.pod.id": SANDBOX,
               "org.criu.checkpoint.pod.namespace": NAMESPACE, "org.criu.checkpoint.pod.uid": UID,
               "org.criu.checkpoint.host.arch": "amd64", "org.criu.checkpoint.host.kernel": "6.18.0",
               "org.criu.checkpoint.criu.version": "40201", "org.criu.checkpoint.distribution.name": "Debian"}
POD_CONFIG = {"metadata": {"name": POD, "uid": UID, "namespace": NAMESPACE, "attempt": 0}, "hostname": POD,
              "log_directory": f"/var/log/pods/{NAMESPACE}_{POD}_{UID}", "port_mappings": [{"container_port": 80}],
              "labels": {"app": "shop"}, "annotations": {"team": "checkout"},
              "linux": {"cgroup_parent": "/kubepods/podx", "security_context": {"namespace_options": {}}}}


def _member_spec(directory: Path, container_id: str, name: str) -> None:
    """Point the member at its pod: its own id and name, the pause container's namespaces by path."""
    spec = json.loads((directory / "spec.dump").read_text())
    spec["linux"] = {"namespaces": [{"type": "pid"}, {"type": "mount"},
                                    {"type": "network", "path": f"/var/run/netns/{SANDBOX[:12]}"},
                                    {"type": "ipc", "path": "/proc/4242/ns/ipc"},
                                    {"type": "uts", "path": "/proc/4242/ns/uts"}]}
    spec["annotations"]["io.kubernetes.container.name"] = name
    (directory / "spec.dump").write_text(json.dumps(spec))
    config = json.loads((directory / "config.dump").read_text())
    config.update(id=container_id, name=name)
    (directory / "config.dump").write_text(json.dumps(config))


def _container_config(name: str) -> dict:
    return {"metadata": {"name": name}, "image": {"image": f"quay.io/example/{name}:v1"}, "command": [f"/{name}"],
            "envs": [{"key": "MODE", "value": "test"}], "linux": {"security_context": {}}}


def _member_dirs(dest: Path, images: Path, engine: str) -> dict[str, Path]:
    out = {}
    for name, container_id in MEMBERS.items():
        staging = dest.parent / f".{dest.name}-{name}"
        build = crio_archive_dir if engine == "cri-o" else containerd_archive_dir
        build(staging, images)
        _member_spec(staging, container_id, name)
        out[name] = staging
    return out


def crio_gen1(dest: Path, images: Path) -> Path:
    """CRI-O's pod archive: a tar with the source directory's own entry."""
    root = dest.parent / f".{dest.name}-root"
    root.mkdir()
    containers = {}
    for name, staging in _member_dirs(dest, images, "cri-o").items():
        directory = f"{MEMBERS[name]}-k8s_{name}_{POD}_{NAMESPACE}_{UID}_0"
        shutil.move(str(staging), root / directory)
        containers[name] = directory
    options = {"version": 1, "containers": containers, "annotations": {**ANNOTATIONS,
                                                                        "org.criu.checkpoint.engine.name": "cri-o"}}
    (root / "pod.options").write_text(json.dumps(options, indent=2))
    return tar_dir(root, dest)


def containerd_gen1(dest: Path, images: Path) -> Path:
    """containerd's pod archive: entries relative to the root, pod.options keyed by full names, pod.dump."""
    root = dest.parent / f".{dest.name}-root"
    root.mkdir()
    containers = {}
    for name, staging in _member_dirs(dest, images, "containerd").items():
        full = f"{name}_{POD}_{NAMESPACE}_{UID}_0"
        shutil.move(str(staging), root / f"{MEMBERS[name]}-{full}")
        containers[full] = f"{MEMBERS[name]}-{full}"
    options = {"version": 1, "containers": containers,
               "annotations": {**ANNOTATIONS, "org.criu.checkpoint.engine.name": "containerd",
                               "org.criu.checkpoint.cgroup.version": "v1"}}
    (root / "pod.options").write_text(json.dumps(options, indent=2))
    (root / "pod.dump").write_text(json.dumps(POD_CONFIG, separators=(",", ":")))
    return tar_dir(root, dest, source_dir_entry=False)


def _hex(container_id: str) -> str:
    return hashlib.sha256(container_id.encode()).hexdigest()


def crio_gen2(dest: Path, images: Path) -> Path:
    """CRI-O's CheckpointPod output directory; the manifest is written last."""
    dest.mkdir()
    (dest / "containers").mkdir()
    entries = []
    for name, staging in _member_dirs(dest, images, "cri-o").items():
        archive = f"containers/{_hex(MEMBERS[name])}.tar"
        data = tar_dir(staging, dest / archive).read_bytes()
        entries.append({"name": name, "id": MEMBERS[name], "archive": archive,
                        "sha256": hashlib.sha256(data).hexdigest(), "config": _container_config(name)})
    (dest / "pod-config.json").write_text(json.dumps(POD_CONFIG, separators=(",", ":")))
    manifest = {"version": 1, "runtime": "cri-o", "runtimeHandler": "runc", "sandboxId": SANDBOX,
                "containers": entries}
    (dest / "checkpoint-manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
    return dest


def _join_pod(layout: Path, name: str) -> None:
    """The checkpoint index's spec (its config.v1+proto Any) with the pod's namespaces by path."""
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    index = json.loads((layout / "blobs" / "sha256" / top["digest"][7:]).read_bytes())
    entry = next(m for m in index["manifests"] if m["mediaType"].endswith("checkpoint.config.v1+proto"))
    the_spec = spec(None, {"io.kubernetes.cri.container-name": name})
    the_spec["linux"] = {"namespaces": [{"type": "pid"}, {"type": "mount"},
                                        {"type": "network", "path": f"/var/run/netns/cni-{SANDBOX[:8]}"},
                                        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
                                        {"type": "uts", "path": "/proc/4242/ns/uts"}]}
    new = _blob(layout, proto_any("types.containerd.io/opencontainers/runtime-spec/1/Spec",
                                  json.dumps(the_spec).encode()), entry["mediaType"], platform=entry["platform"])
    index["manifests"] = [new if m is entry else m for m in index["manifests"]]
    for old in (top, entry):  # an export holds only the blobs its index names
        (layout / "blobs" / "sha256" / old["digest"][7:]).unlink()
    top = _blob(layout, json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": "checkpoint"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))


def _oci_layout_tar(layout: Path, out: Path) -> None:
    """containerd's image export (WithSkipDockerManifest) of the checkpoint index: oci-layout,
    index.json with the one entry, blobs/sha256/*."""
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    entry["annotations"] = {"io.containerd.image.name": "localhost/containerd-pod-checkpoint:x"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    out.write_bytes(buf.getvalue())


def containerd_gen2(dest: Path, images: Path) -> Path:
    """containerd's CheckpointPod output directory."""
    dest.mkdir()
    entries = []
    for name, container_id in MEMBERS.items():
        layout = dest.parent / f".{dest.name}-{name}-layout"
        layout.mkdir()
        containerd_legacy(layout, images, tag="checkpoint")
        _join_pod(layout, name)
        archive = f"container-{_hex(container_id)}.tar"
        _oci_layout_tar(layout, dest / archive)
        entries.append({"name": name, "id": container_id, "archive": archive, "config": _container_config(name),
                        "status": {"id": container_id, "metadata": {"name": name},
                                   "image_ref": "sha256:" + "ab" * 32, "state": 1}})
    (dest / "pod-config.json").write_text(json.dumps(POD_CONFIG, separators=(",", ":")))
    (dest / "checkpoint-manifest.json").write_text(json.dumps({"version": 2, "sandboxId": SANDBOX,
                                                               "containers": entries}, separators=(",", ":")))
    return dest

