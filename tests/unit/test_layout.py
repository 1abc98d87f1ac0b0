"""checkpointer.oci.layout: the OCI image-layout directory (blobs, index.json, tags, gc)."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import pytest

from checkpointer.errors import CorruptData, NotFound
from checkpointer.oci import annotations as ann
from checkpointer.oci import layout as layout_mod
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.digest import sha256_digest
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor, Index, Manifest, empty_config


@pytest.fixture
def store(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "store", create=True)


def blob_names(layout: Layout) -> set[str]:
    return set(os.listdir(layout.root / "blobs" / "sha256"))


def ingest_names(layout: Layout) -> list[str]:
    return os.listdir(layout.root / "ingest")


def put_checkpoint(layout: Layout, tag: str = "", *, layers: tuple[bytes, ...] = (b"layer-a", b"layer-b"),
                   config: bytes = b'{"c":1}') -> tuple[Descriptor, Manifest]:
    manifest = Manifest(layout.put_bytes(config, mt.CHECKPOINT_CONFIG),
                        [layout.put_bytes(data, mt.LAYER_TAR) for data in layers],
                        artifact_type=mt.CHECKPOINT_ARTIFACT)
    desc = layout.put_manifest(manifest)
    if tag:
        layout.tag(tag, desc)
    return desc, manifest


def assert_index_sound(layout: Layout) -> Index:
    data = (layout.root / "index.json").read_bytes()
    json.loads(data)
    assert [n for n in os.listdir(layout.root) if n.startswith(".index.json")] == []
    return Index.from_bytes(data)


# -- creating and opening ----------------------------------------------------------------------

def test_create_makes_a_valid_empty_layout(store: Layout) -> None:
    assert json.loads((store.root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert assert_index_sound(store) == Index(())
    assert (store.root / "blobs" / "sha256").is_dir()
    assert (store.root / "ingest").is_dir()
    assert store.refs() == []


def test_create_again_keeps_what_is_there(store: Layout) -> None:
    desc, _ = put_checkpoint(store, "web:v1")
    again = Layout(store.root, create=True)
    assert again.resolve("web:v1").digest == desc.digest
    assert Layout(store.root).resolve("web:v1").digest == desc.digest


@pytest.mark.parametrize("setup", ["empty dir", "missing", "oci-layout is a dir", "a file"])
def test_opening_something_that_is_not_a_layout_is_not_found(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "x"
    if setup == "empty dir":
        path.mkdir()
        (path / "index.json").write_text("{}")
    elif setup == "oci-layout is a dir":
        (path / "oci-layout").mkdir(parents=True)
    elif setup == "a file":
        path.write_text("hello")
    with pytest.raises(NotFound):
        Layout(path)


def test_missing_or_damaged_index_is_corrupt(store: Layout) -> None:
    (store.root / "index.json").write_text('{"schemaVersion": 2, "manifests": {}}')
    with pytest.raises(CorruptData):
        store.refs()
    (store.root / "index.json").unlink()
    with pytest.raises(CorruptData, match="missing"):
        store.index()


# -- blobs -------------------------------------------------------------------------------------

def test_put_bytes_stores_by_digest_and_is_idempotent(store: Layout) -> None:
    desc = store.put_bytes(b"hello", mt.LAYER_TAR, {"a": "b"})
    assert desc == Descriptor(mt.LAYER_TAR, sha256_digest(b"hello"), 5, {"a": "b"})
    path = store.blob_path(desc.digest)
    assert path.read_bytes() == b"hello"
    inode = path.stat().st_ino
    assert store.put_bytes(b"hello", mt.LAYER_TAR, {"a": "b"}) == desc
    assert path.stat().st_ino == inode        # not rewritten
    assert blob_names(store) == {desc.digest[7:]}
    assert ingest_names(store) == []
    assert store.has_blob(desc.digest)
    assert store.read_blob(desc) == b"hello"
    store.verify_blob(desc)


def test_reading_a_missing_or_damaged_blob(store: Layout) -> None:
    missing = Descriptor(mt.LAYER_TAR, sha256_digest(b"nope"), 4)
    assert not store.has_blob(missing.digest)
    with pytest.raises(NotFound):
        store.read_blob(missing)
    with pytest.raises(NotFound):
        store.verify_blob(missing)
    desc = store.put_bytes(b"hello", mt.LAYER_TAR)
    store.blob_path(desc.digest).write_bytes(b"hellO")
    with pytest.raises(CorruptData, match="mismatch"):
        store.read_blob(desc)
    with pytest.raises(CorruptData, match="mismatch"):
        store.verify_blob(desc)
    store.blob_path(desc.digest).write_bytes(b"hell")
    with pytest.raises(CorruptData, match="truncated"):
        store.verify_blob(desc)
    with pytest.raises(CorruptData):
        store.blob_path("sha256:../../etc/passwd")


def test_writer_commits_what_it_was_given(store: Layout) -> None:
    with store.writing() as w:
        for chunk in (b"a" * 1000, b"", b"b" * 5):
            w.write(chunk)
        w.flush()
        assert w.size == 1005
        desc = w.commit(mt.LAYER_TAR_ZSTD, {"k": "v"}, expected=sha256_digest(b"a" * 1000 + b"b" * 5))
    assert desc == Descriptor(mt.LAYER_TAR_ZSTD, sha256_digest(b"a" * 1000 + b"b" * 5), 1005, {"k": "v"})
    assert store.read_blob(desc) == b"a" * 1000 + b"b" * 5
    assert ingest_names(store) == []


def test_writer_commit_with_wrong_expected_digest_leaves_nothing(store: Layout) -> None:
    before = blob_names(store)
    with store.writing() as w:
        w.write(b"actual bytes")
        with pytest.raises(CorruptData, match="mismatch"):
            w.commit(mt.LAYER_TAR, expected=sha256_digest(b"other bytes"))
    assert blob_names(store) == before
    assert ingest_names(store) == []
    w = store.writer()              # without the context manager too
    w.write(b"x")
    with pytest.raises(CorruptData):
        w.commit(mt.LAYER_TAR, expected=sha256_digest(b"y"))
    assert blob_names(store) == before
    assert ingest_names(store) == []


def test_writing_without_commit_or_with_an_error_leaves_nothing(store: Layout) -> None:
    with store.writing() as w:
        w.write(b"abandoned")
    with pytest.raises(RuntimeError):
        with store.writing() as w:
            w.write(b"failing")
            raise RuntimeError("boom")
    assert ingest_names(store) == []
    assert blob_names(store) == set()


def test_abort_after_commit_does_not_remove_another_writers_file(store: Layout,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = store.writer()
    first.write(b"one")
    first.commit(mt.LAYER_TAR)
    # the next writer gets the very same ingest name (mkstemp names are only random, not unique)
    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(layout_mod.tempfile, "mkstemp",
                        lambda dir, prefix: (os.open(first._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600),
                                             str(first._path)))
    second = store.writer()
    monkeypatch.setattr(layout_mod.tempfile, "mkstemp", real_mkstemp)
    second.write(b"two")
    first.abort()                   # e.g. the `finally` of Layout.writing()
    desc = second.commit(mt.LAYER_TAR)
    assert store.read_blob(desc) == b"two"


def test_commit_survives_a_gc_at_the_moment_of_the_rename(store: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def replace_after_gc(src: str, dst: str) -> None:
        if Path(src).parent == store.root / "ingest":
            store.gc()
        real_replace(src, dst)

    monkeypatch.setattr(layout_mod.os, "replace", replace_after_gc)
    desc = store.put_bytes(b"raced", mt.LAYER_TAR)
    assert store.read_blob(desc) == b"raced"


def test_writer_survives_a_gc_between_creating_and_locking_its_file(store: Layout,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_mkstemp = tempfile.mkstemp
    calls = []

    def mkstemp_then_gc(dir: Path, prefix: str) -> tuple[int, str]:
        fd, name = real_mkstemp(dir=dir, prefix=prefix)
        calls.append(name)
        if len(calls) == 1:
            store.gc()          # the file is not locked yet: gc takes it
        return fd, name

    monkeypatch.setattr(layout_mod.tempfile, "mkstemp", mkstemp_then_gc)
    with store.writing() as w:
        w.write(b"payload")
        desc = w.commit(mt.LAYER_TAR)
    assert store.read_blob(desc) == b"payload"
    assert ingest_names(store) == []


# -- tags --------------------------------------------------------------------------------------

def test_tag_resolve_untag(store: Layout) -> None:
    desc, manifest = put_checkpoint(store, "web:v1")
    resolved = store.resolve("web:v1")
    assert resolved.digest == desc.digest and resolved.size == desc.size
    assert resolved.annotations[ann.REF_NAME] == "web:v1"
    assert store.read_manifest(resolved) == manifest
    assert [name for name, _ in store.refs()] == ["web:v1"]
    index = assert_index_sound(store)
    assert index.manifests[0].artifact_type == mt.CHECKPOINT_ARTIFACT
    with pytest.raises(NotFound):
        store.resolve("web:v2")
    gone = store.untag("web:v1")
    assert gone.digest == desc.digest
    assert store.refs() == []
    with pytest.raises(NotFound):
        store.resolve("web:v1")
    with pytest.raises(NotFound):
        store.untag("web:v1")
    assert assert_index_sound(store) == Index(())


def test_tag_replaces_the_same_name_and_keeps_others(store: Layout) -> None:
    one, _ = put_checkpoint(store, "web:latest", layers=(b"1",))
    two, _ = put_checkpoint(store, "web:latest", layers=(b"2",))
    other, _ = put_checkpoint(store, "db:latest", layers=(b"3",))
    store.tag("web:old", one)
    assert sorted((n, d.digest) for n, d in store.refs()) == sorted(
        [("web:latest", two.digest), ("db:latest", other.digest), ("web:old", one.digest)])
    store.tag("web:latest", two)    # the same again: still one entry
    assert [n for n, _ in store.refs()].count("web:latest") == 1
    assert_index_sound(store)


def test_tag_refuses_a_manifest_whose_blobs_are_missing(store: Layout) -> None:
    put_checkpoint(store, "keep:me")
    before = (store.root / "index.json").read_bytes()
    config = store.put_bytes(b"{}x", mt.CHECKPOINT_CONFIG)
    missing_layer = Descriptor(mt.LAYER_TAR, sha256_digest(b"never written"), 13)
    desc = store.put_manifest(Manifest(config, [missing_layer]))
    with pytest.raises(CorruptData, match="missing"):
        store.tag("web:v1", desc)
    missing_config = Manifest(Descriptor(mt.CHECKPOINT_CONFIG, sha256_digest(b"nope"), 4), [])
    with pytest.raises(CorruptData, match="missing"):
        store.tag("web:v1", store.put_manifest(missing_config))
    unwritten = Manifest(config, []).descriptor()
    with pytest.raises(NotFound):
        store.tag("web:v1", unwritten)
    assert (store.root / "index.json").read_bytes() == before


def test_tag_accepts_the_empty_config_without_its_blob(store: Layout) -> None:
    layer = store.put_bytes(b"data", mt.LAYER_TAR)
    desc = store.put_manifest(Manifest(empty_config(), [layer]))
    store.tag("art:v1", desc)
    assert store.resolve("art:v1").digest == desc.digest


def test_tag_checks_blobs_under_the_lock_gc_takes(store: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    desc, manifest = put_checkpoint(store)
    held = threading.local()
    real_locked = Layout.locked
    real_has_blob = Layout.has_blob
    checked: list[tuple[str, bool]] = []

    def locked(self: Layout):  # noqa: ANN202
        cm = real_locked(self)

        class Wrapped:
            def __enter__(self_inner) -> None:
                cm.__enter__()
                held.on = True

            def __exit__(self_inner, *exc: object) -> None:
                held.on = False
                cm.__exit__(*exc)
        return Wrapped()

    def has_blob(self: Layout, digest: str) -> bool:
        checked.append((digest, getattr(held, "on", False)))
        return real_has_blob(self, digest)

    monkeypatch.setattr(Layout, "locked", locked)
    monkeypatch.setattr(Layout, "has_blob", has_blob)
    store.tag("web:v1", desc)
    wanted = {desc.digest, *(b.digest for b in manifest.blobs())}
    assert wanted <= {digest for digest, under_lock in checked if under_lock}


def test_concurrent_tags_are_all_kept(store: Layout) -> None:
    descs = [put_checkpoint(store, layers=(bytes([i]),))[0] for i in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                store.tag(f"t{n}:v{i}", descs[(n + i) % 4])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.refs()) == 30
    assert_index_sound(store)


def test_a_failed_index_write_leaves_the_old_index_and_no_temp_file(store: Layout,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    desc, _ = put_checkpoint(store, "web:v1")
    before = (store.root / "index.json").read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(layout_mod.os, "fsync", no_space)
    with pytest.raises(OSError):
        store.tag("web:v2", desc)
    assert (store.root / "index.json").read_bytes() == before
    assert_index_sound(store)


# -- gc ----------------------------------------------------------------------------------------

def test_gc_removes_unreferenced_blobs_only(store: Layout) -> None:
    kept, kept_manifest = put_checkpoint(store, "keep:v1", layers=(b"shared", b"mine"))
    dropped, dropped_manifest = put_checkpoint(store, "drop:v1", layers=(b"shared", b"theirs"),
                                               config=b'{"c":2}')
    loose = store.put_bytes(b"loose blob", mt.LAYER_TAR)
    store.untag("drop:v1")
    freed = store.gc()
    want = {d.digest[7:] for d in (kept, *kept_manifest.blobs())}
    assert blob_names(store) == want
    assert freed == loose.size + len(b"theirs") + len(b'{"c":2}') + dropped.size
    assert store.gc() == 0
    store.verify_blob(kept)
    for blob in kept_manifest.blobs():
        store.verify_blob(blob)
    assert assert_index_sound(store).manifests[0].annotations[ann.REF_NAME] == "keep:v1"


def test_blobs_another_process_pinned_outlive_their_tag_until_it_ends(store: Layout) -> None:
    """A lazy restore's supervisor pins its chunks: `ckpt rm` of the tag meanwhile (a gc in another
    process) keeps them; once the supervisor is gone they go."""
    import subprocess
    import sys

    _, manifest = put_checkpoint(store, "lazy:v1", layers=(b"chunk one", b"chunk two"))
    chunks = [layer.digest for layer in manifest.layers]
    pinner = subprocess.Popen(
        [sys.executable, "-c", "import sys; from checkpointer.oci.layout import Layout; "
                               f"Layout(sys.argv[1]).pin({chunks!r}); print('pinned', flush=True); sys.stdin.read()",
         str(store.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert pinner.stdout is not None and pinner.stdout.readline().strip() == "pinned"
        store.untag("lazy:v1")
        store.gc()
        assert {d[7:] for d in chunks} <= blob_names(store)
    finally:
        pinner.communicate("")
    store.gc()
    assert not {d[7:] for d in chunks} & blob_names(store)


def test_gc_removes_abandoned_ingest_files_but_not_a_live_writers(store: Layout) -> None:
    (store.root / "ingest" / "blob-crashed").write_bytes(b"x" * 100)
    live = store.writer()
    live.write(b"in progress")
    live.flush()
    assert store.gc() == 100
    assert ingest_names(store) == [live._path.name]
    live.write(b", done")
    desc = live.commit(mt.LAYER_TAR)
    assert store.read_blob(desc) == b"in progress, done"
    assert ingest_names(store) == []


def test_gc_works_on_a_layout_without_ingest_dir(store: Layout) -> None:
    put_checkpoint(store, "a:b")
    store.put_bytes(b"loose", mt.LAYER_TAR)
    (store.root / "ingest").rmdir()  # as skopeo or another tool leaves a layout
    assert store.gc() == 5
    desc = store.put_bytes(b"new", mt.LAYER_TAR)
    assert store.read_blob(desc) == b"new"


def test_gc_keeps_what_a_nested_image_index_reaches(store: Layout) -> None:
    desc, manifest = put_checkpoint(store)
    nested = Index([desc])
    nested_desc = store.put_bytes(nested.to_bytes(), mt.OCI_INDEX)
    store.put_bytes(b"loose", mt.LAYER_TAR)
    with store.locked():
        store._write_index(Index([nested_desc.with_annotations({ann.REF_NAME: "multi:v1"})]))
    assert store.gc() == 5
    assert blob_names(store) == {d.digest[7:] for d in (nested_desc, desc, *manifest.blobs())}


def test_gc_keeps_untagged_index_entries_and_survives_a_damaged_manifest(store: Layout) -> None:
    desc, manifest = put_checkpoint(store)
    with store.locked():
        store._write_index(Index([desc]))  # no ref name, as other tools write them
    assert store.gc() == 0
    store.blob_path(desc.digest).write_bytes(b"garbage")
    store.gc()                             # must not raise
    assert store.has_blob(desc.digest)


def test_an_index_json_bigger_than_a_registry_manifest_stays_usable(store: Layout) -> None:
    from checkpointer.oci.model import MAX_MANIFEST_BYTES
    desc, _ = put_checkpoint(store)
    many = [desc.with_annotations({ann.REF_NAME: f"checkpoint-number-{i}:latest"}) for i in range(14_000)]
    with store.locked():
        store._write_index(Index(many))
    assert (store.root / "index.json").stat().st_size > MAX_MANIFEST_BYTES
    assert store.resolve("checkpoint-number-13999:latest").digest == desc.digest
    store.untag("checkpoint-number-0:latest")
    store.tag("one-more:v1", desc)
    assert len(store.refs()) == 14_000
    assert store.gc() == 0


def test_abort_removes_the_file_even_when_the_final_flush_fails(tmp_path):
    """On a full disk closing the writer fails too; the half-written blob must still go."""
    import errno

    layout = Layout(tmp_path / "s", create=True)
    writer = layout.writer()
    writer.write(b"x" * 100)  # still in the buffer

    class FullDisk:
        def __init__(self, inner):
            self.inner = inner

        def close(self):
            self.inner.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    writer._file = FullDisk(writer._file)
    writer.abort()
    assert list((layout.root / "ingest").iterdir()) == []
