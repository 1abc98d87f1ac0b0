"""Other engines' pod checkpoints (pod_formats.py builds them to their sources' layouts): read into
ckpt's pod format by `ckpt convert`, shown by `ckpt inspect`, written back where they came from,
and refused when they are damaged or hostile."""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest
from formats import files_of, untar
from pod_formats import MEMBERS, NAMESPACE, POD, SANDBOX, UID, containerd_gen1, containerd_gen2, crio_gen1, crio_gen2

from checkpointer.compat import pod_read
from checkpointer.errors import CorruptData, UsageError
from checkpointer.format import pod as podfmt
from checkpointer.oci.fsck import fsck
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Index
from checkpointer.porcelain.home import Home
from checkpointer.porcelain.pod.convert import convert_if_pod
from checkpointer.porcelain.pod.inspect import inspect_if_pod
from checkpointer.porcelain.pod.places import ref_or_path

LAYOUTS = {
    "cri-o pod.options tar": (crio_gen1, "pod.tar", "pod-archive", "cri-o", ["pod.options"]),
    "containerd pod.options tar": (containerd_gen1, "pod.tar", "pod-archive", "containerd",
                                   ["pod.dump", "pod.options"]),
    "cri-o CheckpointPod dir": (crio_gen2, "pod", "cri-o-pod", "cri-o", ["checkpoint-manifest.json",
                                                                         "pod-config.json"]),
    "containerd CheckpointPod dir": (containerd_gen2, "pod", "containerd-pod", "containerd",
                                     ["checkpoint-manifest.json", "pod-config.json"]),
}


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.mark.parametrize("kind", LAYOUTS)
def test_pod_layout_is_converted_and_inspected(kind: str, criu_images: Path, tmp_path: Path, home: Home) -> None:
    build, name, origin, engine, pod_files = LAYOUTS[kind]
    source = build(tmp_path / name, criu_images)
    assert pod_read.is_pod_archive(source) if source.is_file() else pod_read.is_pod_dir(source)

    result = convert_if_pod(str(source), "shop:v1", home=home)
    assert result is not None and result.origin == origin and sorted(result.members) == sorted(MEMBERS)
    store = home.store()
    desc = store.resolve("shop:v1")
    assert fsck(store).ok and podfmt.is_pod_index(Index.from_bytes(store.read_blob(desc)))
    pod = podfmt.open_pod(store, desc)
    config = pod.config
    assert config.engine == engine and config.sandbox is None and config.network_lock == podfmt.LOCK_CRIU
    assert config.pod.name == POD and config.pod.id == SANDBOX
    if kind != "cri-o pod.options tar":  # CRI-O's first pod archive has no pod config, only its keys
        assert (config.pod.namespace, config.pod.uid) in ((NAMESPACE, UID), (NAMESPACE, ""))
    for member in config.members:
        assert member.id == MEMBERS[member.name]
        shared = {kind for kind, owner in member.namespaces.items() if owner == podfmt.ENGINE_SANDBOX}
        assert shared == {"network", "ipc", "uts"} and member.joins() == {}
        assert member.namespaces["pid"] == "own" and member.namespaces["user"] == "host"
        checkpoint = pod.checkpoints[member.name]
        assert checkpoint.config.engine == engine and checkpoint.manifest.annotations[podfmt.POD_NAME] == POD
    # The engine's pod-level files, byte for byte.
    from checkpointer.compat.pod_write import pod_files as kept

    assert sorted(kept(store, pod)) == pod_files
    for file in pod_files:
        original = (source / file).read_bytes() if source.is_dir() else _member_of(source, file)
        assert kept(store, pod)[file] == original

    view = inspect_if_pod("shop:v1", ref_or_path("shop:v1"), home=home)
    assert view is not None and [m.name for m in view.members] == [m.name for m in config.members]
    assert all(m.view.processes and m.view.memory > 0 for m in view.members)
    # Both members hold the same CRIU images: their criu and pages blobs are stored once.
    assert view.shared > 0 and view.stored < sum(b.size for c in pod.checkpoints.values() for b in c.manifest.blobs())


def _member_of(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.strip("./") == name)
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read()


def test_crio_pod_goes_back_to_its_layout(criu_images: Path, tmp_path: Path, home: Home) -> None:
    source = crio_gen2(tmp_path / "pod", criu_images)
    assert convert_if_pod(str(source), "shop:v1", home=home) is not None
    out = tmp_path / "out"
    result = convert_if_pod("shop:v1", str(out), compat="cri-o-pod", home=home)
    assert result is not None and result.compat == "cri-o-pod"
    manifest = json.loads((out / "checkpoint-manifest.json").read_text())
    original = json.loads((source / "checkpoint-manifest.json").read_text())
    assert list(manifest) == ["version", "runtime", "runtimeHandler", "sandboxId", "containers"]
    assert {k: v for k, v in manifest.items() if k != "containers"} == \
        {k: v for k, v in original.items() if k != "containers"}
    assert (out / "pod-config.json").read_bytes() == (source / "pod-config.json").read_bytes()
    for entry, before in zip(manifest["containers"], original["containers"], strict=True):
        assert list(entry) == ["name", "id", "archive", "sha256", "config"]
        assert entry["config"] == before["config"] and entry["archive"] == before["archive"]
        archive = out / entry["archive"]
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == entry["sha256"]
        # The container's files come back as CRI-O wrote them.
        assert files_of(untar(archive, tmp_path / f"new-{entry['name']}")) == \
            files_of(untar(source / before["archive"], tmp_path / f"old-{entry['name']}"))
    # What ckpt wrote reads back the same.
    again = convert_if_pod(str(out), "again:v1", home=home)
    assert again is not None and again.origin == "cri-o-pod"


def test_pod_archive_goes_back_to_its_layout(criu_images: Path, tmp_path: Path, home: Home) -> None:
    source = containerd_gen1(tmp_path / "pod.tar", criu_images)
    assert convert_if_pod(str(source), "shop:v1", home=home) is not None
    out = tmp_path / "out.tar"
    assert convert_if_pod("shop:v1", str(out), compat="pod-archive", home=home) is not None
    assert files_of(untar(out, tmp_path / "new")) == files_of(untar(source, tmp_path / "old"))


def test_a_pod_cannot_take_another_engines_layout(criu_images: Path, tmp_path: Path, home: Home) -> None:
    convert_if_pod(str(containerd_gen2(tmp_path / "pod", criu_images)), "shop:v1", home=home)
    with pytest.raises(UsageError, match="cannot become CRI-O's pod checkpoint"):
        convert_if_pod("shop:v1", str(tmp_path / "out"), compat="cri-o-pod", home=home)
    with pytest.raises(UsageError, match="single container"):
        convert_if_pod("shop:v1", str(tmp_path / "img"), compat="podman", home=home)


def _tamper_sha(root: Path) -> None:
    manifest = json.loads((root / "checkpoint-manifest.json").read_text())
    manifest["containers"][0]["sha256"] = "0" * 64
    (root / "checkpoint-manifest.json").write_text(json.dumps(manifest))


def _rename_archive(root: Path) -> None:
    manifest = json.loads((root / "checkpoint-manifest.json").read_text())
    manifest["containers"][1]["archive"] = manifest["containers"][0]["archive"]
    (root / "checkpoint-manifest.json").write_text(json.dumps(manifest))


def _link_archive(root: Path) -> None:
    manifest = json.loads((root / "checkpoint-manifest.json").read_text())
    archive = root / manifest["containers"][0]["archive"]
    archive.rename(root / "elsewhere.tar")
    os.symlink(root / "elsewhere.tar", archive)


def _unknown_version(root: Path) -> None:
    manifest = json.loads((root / "checkpoint-manifest.json").read_text())
    manifest["version"] = 3
    (root / "checkpoint-manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, problem", [
    (_tamper_sha, "does not match the sha256"),
    (_rename_archive, "names it"),
    (_link_archive, "is a link"),
    (_unknown_version, "no pod checkpoint layout this ckpt knows"),
])
def test_damaged_or_hostile_pod_directory_is_refused(damage, problem: str, criu_images: Path, tmp_path: Path,
                                                     home: Home) -> None:  # noqa: ANN001
    source = crio_gen2(tmp_path / "pod", criu_images)
    damage(source)
    with pytest.raises(CorruptData, match=problem):
        convert_if_pod(str(source), "shop:v1", home=home)
    assert home.store().refs() == []


def test_pod_options_naming_a_directory_outside_is_refused(criu_images: Path, tmp_path: Path, home: Home) -> None:
    source = untar(crio_gen1(tmp_path / "pod.tar", criu_images), tmp_path / "pod")
    options = json.loads((source / "pod.options").read_text())
    options["containers"]["web"] = "../../etc"
    (source / "pod.options").write_text(json.dumps(options))
    with pytest.raises(CorruptData, match="container's directory"):
        convert_if_pod(str(source), "shop:v1", home=home)


def test_a_single_container_archive_is_no_pod(criu_images: Path, tmp_path: Path) -> None:
    from formats import crio_archive_dir, tar_dir

    single = tar_dir(crio_archive_dir(tmp_path / "one", criu_images), tmp_path / "one.tar")
    assert not pod_read.is_pod_archive(single) and not pod_read.is_pod_dir(tmp_path / "one")
    layout = Layout(tmp_path / "layout", create=True)
    with pytest.raises(UsageError, match="no pod checkpoint"):
        pod_read.pod_to_ckpt(tmp_path / "one", layout, tmp_path / "work")


def test_the_single_container_reader_refuses_a_pod(criu_images: Path, tmp_path: Path) -> None:
    from checkpointer.compat.read import archive_to_ckpt

    source = containerd_gen1(tmp_path / "pod.tar", criu_images)
    layout = Layout(tmp_path / "layout", create=True)
    with pytest.raises(UsageError, match="pod checkpoint of several containers"):
        archive_to_ckpt(source, layout, tmp_path / "work")


def test_a_member_config_that_is_no_object_is_corrupt_data(criu_images: Path, tmp_path: Path, home: Home) -> None:
    source = untar(crio_gen1(tmp_path / "pod.tar", criu_images), tmp_path / "pod")
    options = json.loads((source / "pod.options").read_text())
    directory = next(iter(options["containers"].values()))
    (source / directory / "config.dump").write_text("[]")
    with pytest.raises(CorruptData, match="not a JSON object"):
        convert_if_pod(str(source), "shop:v1", home=home)


@pytest.mark.parametrize("directory", ["/tmp/elsewhere", "..", "a/../../b"])
def test_a_stored_pod_options_naming_a_directory_outside_is_not_written(directory: str, criu_images: Path,
                                                                       tmp_path: Path, home: Home) -> None:
    """The stored engine layer may come from a registry: writing the archive back checks the names
    again, and writes nothing outside."""
    from checkpointer.compat import pod_write
    from checkpointer.progress import noop

    assert convert_if_pod(str(crio_gen1(tmp_path / "pod.tar", criu_images)), "shop:v1", home=home) is not None
    store = home.store()
    pod = podfmt.open_pod(store, store.resolve("shop:v1"))
    files = pod_write.pod_files(store, pod)
    options = json.loads(files["pod.options"])
    key = next(iter(options["containers"]))
    options["containers"][key] = directory
    files["pod.options"] = json.dumps(options).encode()
    (tmp_path / "out").mkdir()
    with pytest.raises(CorruptData, match="container's directory"):
        pod_write._gen1(store, pod, files, tmp_path / "out" / "pod.tar", noop)
    assert not (tmp_path / "elsewhere").exists() and list((tmp_path / "out").iterdir()) == []
