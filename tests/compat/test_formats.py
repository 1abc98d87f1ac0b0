"""Other engines' checkpoints, built to their sources' exact layouts, read by ckpt (inspect, restore's
refusals, convert, export) and ckpt's --compat images checked against what those engines look for."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from compat.formats import (IMAGE, IMAGE_REF, ROOTFS_DIFF, checkpoint_image, containerd_archive_dir,
                            containerd_legacy, crio_archive_dir, files_of, podman_archive_dir, tar_dir, untar)
from support.sample import ckpt

from checkpointer.errors import CorruptData, UsageError


def _inspect(ref: str, home: Path) -> dict:
    return json.loads(ckpt("inspect", ref, "--json", home=home, check=True).stdout)


def _assert_process(view: dict) -> None:
    [proc] = view["processes"]
    assert "workload --mem 1" in proc["command"]


def test_kubelet_cri_o_archive(criu_images, tmp_path, ckpt_home):
    root = crio_archive_dir(tmp_path / "crio", criu_images)
    archive = tar_dir(root, tmp_path / "checkpoint-counters_default-counter-2026-01-02T03:14:15Z.tar")
    view = _inspect(str(archive), ckpt_home)
    assert view["origin"] == "cri-o-archive"
    config = view["config"]
    assert config["engine"] == "cri-o" and config["container"] == {"id": "4f2a" * 16, "name": "counter"}
    assert config["criu"]["version"] == "4.1.1"  # from dump.log
    assert config["base"] == {"name": IMAGE} and config["host"]["arch"] == "amd64"
    assert config["created"] == "2026-01-02T03:14:15Z"
    assert [layer["role"] for layer in view["layers"]][0] == "criu"
    assert {"criu", "pages", "spec", "engine"} <= {layer["role"] for layer in view["layers"]}
    _assert_process(view)

    # Restore says precisely what is missing, for each engine.
    res = ckpt("restore", str(archive), home=ckpt_home)
    text = " ".join(res.stderr.split())
    assert res.returncode == UsageError.exit_code
    assert "cri-o checkpoint cannot be restored into runc" in text and "full root filesystem" in text
    assert "rootfs-diff.tar" in text and IMAGE in text and "/userdata/resolv.conf" in text
    assert "--compat cri-o" in text
    res = ckpt("restore", str(archive), "--engine", "podman", home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "not libpod's" in " ".join(res.stderr.split())

    # Through ckpt's format and back, the archive keeps every file byte for byte.
    ckpt("convert", str(archive), "kube:v1", home=ckpt_home, check=True)
    out = tmp_path / "again.tar.gz"
    ckpt("export", "kube:v1", str(out), home=ckpt_home, check=True)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert files_of(untar(out, tmp_path / "again")) == files_of(root)


def test_containerd_cri_archives_gzip_and_zstd(criu_images, tmp_path, ckpt_home):
    root = containerd_archive_dir(tmp_path / "ctd", criu_images)
    for compression, name in (("gzip", "c.tar.gz"), ("zstd", "c.tar.zst")):
        view = _inspect(str(tar_dir(root, tmp_path / name, compression)), ckpt_home)
        assert view["origin"] == "containerd-archive"
        assert view["config"]["engine"] == "containerd" and view["config"]["container"]["name"] == "web"
        assert view["config"]["base"]["name"] == "docker.io/library/web:1"
        _assert_process(view)
    res = ckpt("restore", str(tmp_path / "c.tar.zst"), home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "containerd checkpoint cannot be restored into runc" in \
        " ".join(res.stderr.split())


def test_podman_export_archive(criu_images, tmp_path, ckpt_home):
    root = podman_archive_dir(tmp_path / "pm", criu_images)
    view = _inspect(str(tar_dir(root, tmp_path / "pm.tar.zst", "zstd", source_dir_entry=False)), ckpt_home)
    assert view["origin"] == "podman-archive" and view["config"]["engine"] == "podman"
    assert view["config"]["base"]["name"] == IMAGE


def test_podman_checkpoint_image(criu_images, tmp_path, ckpt_home):
    root = podman_archive_dir(tmp_path / "pm", criu_images)
    annotations = {"io.podman.annotations.checkpoint.name": "counter",
                   "io.podman.annotations.checkpoint.runtime.name": "runc",
                   "io.podman.annotations.checkpoint.criu.version": "40101",
                   "io.podman.annotations.checkpoint.host.kernel": "6.1.0",
                   "io.podman.annotations.checkpoint.cgroups.version": "v2",
                   "io.podman.annotations.checkpoint.runtime.version": "runc version 1.1.5\ncommit: x",
                   "io.podman.annotations.checkpoint.rootfsImageName": IMAGE,
                   "org.opencontainers.image.base.digest": "", "org.opencontainers.image.base.name": ""}
    layout = checkpoint_image(tmp_path / "img", root, annotations)
    view = _inspect(f"oci:{layout}:ckpt", ckpt_home)
    assert view["origin"] == "podman-image"
    config = view["config"]
    assert config["criu"]["version"] == "4.1.1" and config["host"]["kernel"] == "6.1.0"
    assert config["host"]["cgroupVersion"] == 2 and config["runtime"] == {"name": "runc", "version": "1.1.5"}
    assert config["base"] == {"name": IMAGE}
    _assert_process(view)


def test_cri_o_image_and_checkpointctl_index(criu_images, tmp_path, ckpt_home):
    root = crio_archive_dir(tmp_path / "crio", criu_images)
    crio = checkpoint_image(tmp_path / "crio-img", root, {"io.kubernetes.cri-o.annotations.checkpoint.name": "counter"})
    assert _inspect(f"oci:{crio}:ckpt", ckpt_home)["origin"] == "cri-o-image"
    # checkpointctl's keys only on the index (what containerd 2.1-2.3 reads); the manifest has none.
    index_ann = {"org.criu.checkpoint.container.name": "counter", "org.criu.checkpoint.engine.name": "cri-o",
                 "org.criu.checkpoint.rootfsImageName": IMAGE, "org.criu.checkpoint.runtime.name": "runc"}
    ctl = checkpoint_image(tmp_path / "ctl-img", root, {}, index_annotations=index_ann)
    view = _inspect(f"oci:{ctl}:ckpt", ckpt_home)
    assert view["origin"] == "checkpointctl-image" and view["config"]["engine"] == "cri-o"
    _assert_process(view)


def test_containerd_legacy_index(criu_images, tmp_path, ckpt_home):
    layout, facts = containerd_legacy(tmp_path / "legacy", criu_images)
    view = _inspect(f"oci:{layout}:legacy", ckpt_home)
    assert view["origin"] == "containerd-legacy"
    config = view["config"]
    assert config["engine"] == "containerd" and config["runtime"]["name"] == "v2"
    assert config["base"] == {"name": "docker.io/library/web:1", "digest": facts["base"]}
    assert config["criu"]["options"]["fileLocks"] is True and config["criu"]["options"]["tcpEstablished"] is True
    assert config["criu"]["options"]["extUnixSk"] is False
    _assert_process(view)
    out = tmp_path / "legacy.tar"
    ckpt("export", f"oci:{layout}:legacy", str(out), home=ckpt_home, check=True)
    files = files_of(untar(out, tmp_path / "unpacked"))
    assert json.loads(files["spec.dump"]) == facts["spec"]
    assert gzip.decompress(files["rootfs-diff.tar"]) == ROOTFS_DIFF  # the gzip layer, as containerd's CRI has it
    assert files["checkpoint/inventory.img"] == (criu_images / "inventory.img").read_bytes()


def _layer_of(layout: Path, tag: str) -> tuple[dict, dict, bytes]:
    index = json.loads((layout / "index.json").read_text())
    [entry] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"][7:]).read_bytes())
    config = json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes())
    [layer] = manifest["layers"]
    return manifest, config, gzip.decompress((layout / "blobs" / "sha256" / layer["digest"][7:]).read_bytes())


def test_compat_cri_o_image_is_what_cri_o_looks_for(criu_images, tmp_path, ckpt_home):
    # A Podman checkpoint as a CRI-O image: CRI-O's key, spec.dump gains CRI-O's annotation.
    root = podman_archive_dir(tmp_path / "pm", criu_images)
    archive = tar_dir(root, tmp_path / "pm.tar")
    out = json.loads(ckpt("convert", str(archive), f"oci:{tmp_path / 'out'}:kube", "--compat", "kubernetes",
                          "--json", home=ckpt_home, check=True).stdout)
    assert out["origin"] == "podman-archive" and out["compat"] == "kubernetes"
    manifest, config, layer = _layer_of(tmp_path / "out", "kube")
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json" and "artifactType" not in manifest
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}
    assert "Cmd" not in config["config"] and "Entrypoint" not in config["config"]
    ann = manifest["annotations"]
    assert ann["io.kubernetes.cri-o.annotations.checkpoint.name"] == "counter"
    assert ann["org.criu.checkpoint.container.name"] == "counter"
    assert not any(key.startswith("io.podman.") for key in ann)
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = set(tar.getnames())
        assert {"checkpoint/inventory.img", "config.dump", "spec.dump", "rootfs-diff.tar"} <= names
        assert all(m.isfile() or m.isdir() for m in tar.getmembers())
        spec = json.load(tar.extractfile("spec.dump"))
        dump = json.load(tar.extractfile("config.dump"))
    assert "io.kubernetes.cri-o.Annotations" in spec["annotations"]
    assert dump["rootfsImage"] == IMAGE and dump["rootfsImageRef"] == IMAGE_REF
    # ckpt reads its own output back as a CRI-O image.
    assert _inspect(f"oci:{tmp_path / 'out'}:kube", ckpt_home)["origin"] == "cri-o-image"


def test_compat_podman_image_from_podman_archive(criu_images, tmp_path, ckpt_home):
    root = podman_archive_dir(tmp_path / "pm", criu_images)
    archive = tar_dir(root, tmp_path / "pm.tar")
    ckpt("convert", str(archive), f"oci:{tmp_path / 'out'}:pm", "--compat", "podman", home=ckpt_home, check=True)
    manifest, _, layer = _layer_of(tmp_path / "out", "pm")
    ann = manifest["annotations"]
    assert ann["io.podman.annotations.checkpoint.runtime.name"] == "runc"
    assert ann["io.podman.annotations.checkpoint.rootfsImageName"] == IMAGE
    assert ann["io.podman.annotations.checkpoint.rootfsImageID"] == IMAGE_REF
    assert "io.kubernetes.cri-o.annotations.checkpoint.name" not in ann
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        assert tar.extractfile("config.dump").read() == (root / "config.dump").read_bytes()
    # A CRI-O checkpoint cannot become a Podman image, and ckpt says why.
    crio = tar_dir(crio_archive_dir(tmp_path / "crio", criu_images), tmp_path / "crio.tar")
    res = ckpt("convert", str(crio), f"oci:{tmp_path / 'x'}:pm", "--compat", "podman", home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "libpod" in res.stderr


def test_not_a_checkpoint_and_hostile_archives(tmp_path, ckpt_home):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "hello").write_text("hi")
    layout = checkpoint_image(tmp_path / "plain-img", plain, {"org.opencontainers.image.title": "app"})
    res = ckpt("inspect", f"oci:{layout}:ckpt", home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "not a checkpoint" in res.stderr

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    res = ckpt("restore", str(evil), home=ckpt_home)
    assert res.returncode == CorruptData.exit_code and "'..'" in res.stderr
    assert not (tmp_path / "escape").exists()

    linked = tmp_path / "linked.tar"
    with tarfile.open(linked, "w") as tar:
        info = tarfile.TarInfo("checkpoint")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    res = ckpt("inspect", str(linked), home=ckpt_home)
    assert res.returncode == CorruptData.exit_code and "symlink" in res.stderr


def test_pod_archives_are_refused(tmp_path, ckpt_home):
    root = tmp_path / "kubelet"
    root.mkdir()
    (root / "checkpointed.pods").write_text('{"version": 1, "CheckpointedPods": []}')
    res = ckpt("inspect", str(tar_dir(root, tmp_path / "pods.tar")), home=ckpt_home)
    assert res.returncode == UsageError.exit_code and "whole pods" in res.stderr
