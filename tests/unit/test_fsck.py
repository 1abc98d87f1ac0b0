"""fsck finds what crashes and bad disks leave, and repair removes exactly that; gc spares the
blobs of a save that is still running in another process."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from checkpointer.oci import mediatypes as mt
from checkpointer.oci.fsck import fsck
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest


def _tagged(layout: Layout, name: str, payload: bytes) -> Manifest:
    config = layout.put_bytes(b'{"x": 1}', "application/vnd.ckpt.checkpoint.config.v1+json")
    layer = layout.put_bytes(payload, mt.LAYER_TAR_ZSTD)
    manifest = Manifest(config=config, layers=(layer,), artifact_type="application/vnd.ckpt.checkpoint.v1")
    layout.tag(name, layout.put_manifest(manifest))
    return manifest


def test_clean_store_is_ok(tmp_path):
    layout = Layout(tmp_path / "s", create=True)
    _tagged(layout, "a:v1", b"a" * 1000)
    report = fsck(layout)
    assert report.ok and report.tags == 1 and report.blobs_checked == 3 and report.garbage == 0


def test_damaged_and_missing_blobs_are_found_and_repaired(tmp_path):
    layout = Layout(tmp_path / "s", create=True)
    damaged = _tagged(layout, "damaged:v1", b"d" * 1000)
    missing = _tagged(layout, "missing:v1", b"m" * 1000)
    _tagged(layout, "fine:v1", b"f" * 1000)
    path = layout.blob_path(damaged.layers[0].digest)
    path.write_bytes(b"e" + path.read_bytes()[1:])
    layout.blob_path(missing.layers[0].digest).unlink()

    report = fsck(layout)
    assert {f.ref for f in report.findings} == {"damaged:v1", "missing:v1"}
    assert "digest mismatch" in next(f.problem for f in report.findings if f.ref == "damaged:v1")
    assert "missing" in next(f.problem for f in report.findings if f.ref == "missing:v1")
    assert [name for name, _ in layout.refs()] == ["damaged:v1", "missing:v1", "fine:v1"]  # check only

    quick = fsck(layout, full=False)  # sizes only: the flipped byte goes unnoticed, the hole does not
    assert {f.ref for f in quick.findings} == {"missing:v1"}

    repaired = fsck(layout, repair=True)
    assert set(repaired.removed_tags) == {"damaged:v1", "missing:v1"}
    assert [name for name, _ in layout.refs()] == ["fine:v1"]
    assert repaired.freed > 0
    assert fsck(layout).ok
    assert not layout.has_blob(damaged.layers[0].digest)


def test_leftovers_of_a_killed_writer_are_garbage(tmp_path):
    layout = Layout(tmp_path / "s", create=True)
    _tagged(layout, "a:v1", b"a" * 100)
    (layout.root / "ingest" / "blob-dead").write_bytes(b"x" * 5000)
    orphan = layout.put_bytes(b"o" * 7000, mt.LAYER_TAR_ZSTD)
    fresh = Layout(layout.root)  # another view of the store, as `ckpt fsck` would open it
    # The dead writer's file is garbage; the orphan blob is spared: the session that wrote it is live.
    assert fresh.garbage_bytes() == 5000
    report = fsck(fresh, repair=True)
    assert layout.has_blob(orphan.digest)
    assert not (layout.root / "ingest" / "blob-dead").exists()
    assert report.ok


def test_gc_spares_blobs_of_a_running_save_in_another_process(tmp_path):
    layout = Layout(tmp_path / "s", create=True)
    script = textwrap.dedent(f"""
        import sys, time
        from checkpointer.oci.layout import Layout
        store = Layout({str(layout.root)!r})
        desc = store.put_bytes(b"in flight" * 1000, "application/octet-stream")
        print(desc.digest, flush=True)
        sys.stdin.readline()  # hold the session until told to finish
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        digest = writer.stdout.readline().strip()
        assert layout.gc() == 0 and layout.has_blob(digest)
    finally:
        writer.communicate("done\n")
    assert layout.gc() > 0 and not layout.has_blob(digest)  # its writer ended without tagging it
