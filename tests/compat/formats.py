"""Build other engines' checkpoints to the exact layout their sources define, independently of ckpt's
own code (plain tarfile, json, hashlib): CRI-O's CRI archive (cri-o internal/lib/checkpoint.go),
containerd's CRI archive (internal/cri/server/container_checkpoint_linux.go), Podman's export
(libpod exportCheckpoint), single-layer checkpoint images (Podman createCheckpointImage, buildah +
CRI-O key, checkpointctl build) and containerd's legacy `ctr checkpoint` index."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import zstandard

CONTAINER_ID = "4f2a" * 16
IMAGE = "quay.io/example/counter:v2"
IMAGE_REF = "9b1e" * 16


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ROOTFS_DIFF = _tar_bytes({"state": b"counter=7\n", "etc/app.conf": b"mode=test\n"})


def spec(manager: str | None, annotations: dict[str, str] | None = None) -> dict:
    ann = dict(annotations or {})
    if manager:
        ann["io.container.manager"] = manager
    return {
        "ociVersion": "1.0.2-dev",
        "process": {"args": ["/bin/workload", "--mem", "1"], "cwd": "/", "terminal": False},
        "root": {"path": f"/var/lib/containers/storage/overlay/{CONTAINER_ID}/merged"},
        "hostname": "counter",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/resolv.conf", "type": "bind", "options": ["rbind"],
             "source": f"/var/run/containers/storage/overlay-containers/{CONTAINER_ID}/userdata/resolv.conf"},
        ],
        "annotations": ann,
    }


def _json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2))


def _images(dest: Path, images: Path) -> None:
    shutil.copytree(images, dest / "checkpoint")


def crio_archive_dir(dest: Path, images: Path) -> Path:
    """What CRI-O's ContainerCheckpoint puts into its (uncompressed) export tar."""
    dest.mkdir(parents=True)
    _images(dest, images)
    (dest / "dump.log").write_text("(00.000000) Version: 4.1.1 (gitid 0)\n(00.000010) Running on node\n")
    (dest / "stats-dump").write_bytes(b"\x20\x00\x10\x01")
    _json(dest / "config.dump", {"id": CONTAINER_ID, "name": "counter", "rootfsImage": IMAGE,
                                 "rootfsImageRef": IMAGE_REF, "rootfsImageName": IMAGE, "runtime": "runc",
                                 "createdTime": "2026-01-02T03:04:05.123456789Z",
                                 "checkpointedTime": "2026-01-02T03:14:15.5Z", "restored": False})
    crio = {"io.kubernetes.container.name": "counter", "io.kubernetes.pod.name": "counters",
            "io.kubernetes.pod.namespace": "default"}
    _json(dest / "spec.dump", spec("cri-o", {**crio, "io.kubernetes.cri-o.Annotations": json.dumps(crio)}))
    _json(dest / "bind.mounts", [{"source": f"/var/run/containers/storage/overlay-containers/{CONTAINER_ID}/"
                                            "userdata/resolv.conf", "destination": "/etc/resolv.conf",
                                  "file_type": "file", "permissions": 420}])
    (dest / "rootfs-diff.tar").write_bytes(ROOTFS_DIFF)
    _json(dest / "deleted.files", ["/etc/motd"])
    (dest / "io.kubernetes.cri-o.LogPath").write_text("2026-01-02T03:04:06Z stdout F started\n")
    return dest


def containerd_archive_dir(dest: Path, images: Path) -> Path:
    """What containerd's CRI CheckpointContainer writes (rootfs-diff.tar is its gzip layer blob)."""
    dest.mkdir(parents=True)
    _images(dest, images)
    (dest / "rootfs-diff.tar").write_bytes(gzip.compress(ROOTFS_DIFF, mtime=0))
    _json(dest / "spec.dump", spec(None, {"io.kubernetes.cri.container-type": "container",
                                          "io.kubernetes.cri.container-name": "web",
                                          "io.kubernetes.cri.sandbox-name": "web-7d4b"}))
    _json(dest / "config.dump", {"id": CONTAINER_ID, "name": "web", "rootfsImageName": "docker.io/library/web:1",
                                 "rootfsImageRef": "sha256:" + IMAGE_REF, "runtime": "io.containerd.runc.v2",
                                 "createdTime": "2026-01-02T03:04:05Z", "checkpointedTime": "2026-01-02T03:14:15Z"})
    _json(dest / "status.dump", {"id": CONTAINER_ID, "metadata": {"name": "web"}, "state": "CONTAINER_RUNNING"})
    (dest / "status").write_text("{}")
    (dest / "container.log").write_text("hello\n")
    (dest / "dump.log").write_text("(00.000000) Version: 4.1.1 (gitid 0)\n")
    (dest / "stats-dump").write_bytes(b"\x00")
    return dest


def podman_archive_dir(dest: Path, images: Path, base: str = IMAGE) -> Path:
    """What `podman container checkpoint --export` writes (Podman 4.3: config.dump's RawImageName)."""
    dest.mkdir(parents=True)
    _images(dest, images)
    (dest / "artifacts").mkdir()
    (dest / "devshm-checkpoint.tar").write_bytes(_tar_bytes({}))
    _json(dest / "config.dump", {"id": CONTAINER_ID, "name": "counter", "RawImageName": base,
                                 "rootfsImageID": IMAGE_REF, "rootfsImageName": base, "runtime": "runc",
                                 "createdTime": "2026-01-02T03:04:05.5Z", "spec": {}})
    _json(dest / "spec.dump", spec("libpod"))
    (dest / "network.status").write_text("null")
    (dest / "stats-dump").write_bytes(b"\x00")
    (dest / "ctr.log").write_text("")
    (dest / "rootfs-diff.tar").write_bytes(ROOTFS_DIFF)
    _json(dest / "deleted.files", [])
    return dest


def tar_dir(root: Path, out: Path, compression: str = "none", *, source_dir_entry: bool = True) -> Path:
    """Tar `root`'s contents the way the engines do (names relative to it, CRI-O also adds "./")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if source_dir_entry:
            tar.add(root, arcname=".", recursive=False)
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    data = buf.getvalue()
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    out.write_bytes(data)
    return out


# -- OCI layouts ---------------------------------------------------------------------------------

def _blob(layout: Path, data: bytes, media_type: str, **extra: object) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def _layout(layout: Path, top: dict, tag: str) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entry = {**top, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def checkpoint_image(layout: Path, archive_dir: Path, annotations: dict[str, str], *, tag: str = "ckpt",
                     index_annotations: dict[str, str] | None = None) -> Path:
    """A buildah-made checkpoint image: `FROM scratch`, the archive added (extracted) at /, annotations.
    With index_annotations the tag points at an index holding the manifest (containerd's view)."""
    raw = tar_dir(archive_dir, layout.parent / f"{layout.name}.layer.tar", source_dir_entry=False).read_bytes()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = _blob(layout, gzip.compress(raw), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = _blob(layout, json.dumps({"created": "2026-01-02T03:14:16Z", "architecture": "amd64", "os": "linux",
                                       "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                                       "history": [{"created_by": "/bin/sh"}]}).encode(),
                   "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
                "layers": [layer], "annotations": annotations}
    top = _blob(layout, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    if index_annotations is not None:
        top["platform"] = {"architecture": "amd64", "os": "linux"}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top],
                 "annotations": index_annotations}
        top = _blob(layout, json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")
    _layout(layout, top, tag)
    return layout


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _pb_bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + _varint(int(value))


def proto_any(type_url: str, value: bytes) -> bytes:
    return _pb_bytes(1, type_url.encode()) + _pb_bytes(2, value)


def containerd_legacy(layout: Path, images: Path, *, tag: str = "legacy") -> tuple[Path, dict]:
    """`ctr checkpoint`'s index (client/container.go, container_checkpoint_opts.go, tasks Checkpoint)."""
    criu_tar = io.BytesIO()
    with tarfile.open(fileobj=criu_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(images.iterdir()):
            tar.add(path, arcname=path.name, recursive=False)
    the_spec = spec(None)
    options = _pb_bool(1, False) + _pb_bool(2, True) + _pb_bool(5, True)  # exit, open_tcp, file_locks
    base_config = _blob(layout, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
                        "application/vnd.oci.image.config.v1+json")
    base = _blob(layout, json.dumps({"schemaVersion": 2, "config": base_config, "layers": []}).encode(),
                 "application/vnd.oci.image.manifest.v1+json", platform={"architecture": "amd64", "os": "linux"})
    platform = {"architecture": "amd64", "os": "linux"}
    manifests = [
        base,
        _blob(layout, criu_tar.getvalue(), "application/vnd.containerd.container.criu.checkpoint.criu.tar",
              platform=platform),
        _blob(layout, proto_any("types.containerd.io/opencontainers/runtime-spec/1/Spec",
                                json.dumps(the_spec).encode()),
              "application/vnd.containerd.container.checkpoint.config.v1+proto", platform=platform),
        _blob(layout, gzip.compress(ROOTFS_DIFF, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip",
              platform=platform),
        _blob(layout, proto_any("containerd.runc.v1.CheckpointOptions", options),
              "application/vnd.containerd.container.checkpoint.options.v1+proto", platform=platform),
    ]
    index = {"schemaVersion": 2, "manifests": manifests,
             "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/web:1",
                             "io.containerd.checkpoint.runtime": "io.containerd.runc.v2",
                             "io.containerd.checkpoint.snapshotter": "overlayfs"}}
    top = _blob(layout, json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")
    _layout(layout, top, tag)
    return layout, {"base": base["digest"], "spec": the_spec}


def files_of(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def untar(archive: Path, dest: Path) -> Path:
    data = archive.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    elif data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    dest.mkdir(parents=True)
    # The fixtures are our own; filter="data" where this Python has it (3.11.4+), as a habit.
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, **safe)
    return dest
