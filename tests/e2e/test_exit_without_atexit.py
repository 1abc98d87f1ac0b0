"""`ckpt` ends with os._exit (no interpreter teardown, ~80 ms a command): nothing it prints, logs or
leaves behind may depend on what that skips. Real commands (a save that fails after the dump, an
inspect piped to a slow reader, output to a full disk) are complete and leave no temporary file;
run in one process, they leave no atexit work (handlers that matter, threads, finalizers) either."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import certifi
import pytest
from support.sample import REPO, ckpt, make_bundle, runc_status, start, wait_for

from checkpointer.errors import StorageError
from checkpointer.porcelain.home import tmpfs_parent

# What registers atexit work in ckpt's process, and why skipping it loses nothing:
KNOWN_ATEXIT = {
    "logging.shutdown",  # run() calls it before os._exit
    "certifi.core.exit_cacert_ctx",  # removes a CA file extracted from a zipped certifi; ckpt's is a real file
    "concurrent.futures.thread._python_exit",  # joins pool workers: every pool is shut down before main() returns
    "weakref.finalize._exitfunc",  # runs finalizers still alive (a TemporaryDirectory): the test checks none is
}


def _mounted(path: Path, size: str) -> Path:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "ckpt-test", str(path)], check=True)
    return path


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def _abandoned_tmpfs_dirs() -> set[str]:
    """Work dirs in this user's tmpfs parent that no live run holds (see Home.workdir)."""
    import fcntl
    parent, found = tmpfs_parent(), set()
    for entry in (os.listdir(parent) if parent.is_dir() else []):
        try:
            fd = os.open(parent / entry / ".owner", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            found.add(entry)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            found.add(entry)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return found


def test_a_failed_save_and_piped_output_are_complete_and_leave_nothing(bundle_template, tmp_path, runc_root,
                                                                       ckpt_home, container_name):
    assert Path(certifi.where()).is_file()  # so certifi's atexit handler has nothing to remove
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    shm_before = _abandoned_tmpfs_dirs()
    # The CRIU images fit beside a store on this small disk, the packed layers do not: the save
    # to an OCI layout fails after the dump (as in test_runc_save_restore's disk-full test).
    small = _mounted(tmp_path / "small", "19m")
    try:
        failed = ckpt("save", "--runc-root", str(runc_root), container_name, f"oci:{tmp_path}/layout:v1",
                      home=small, env={**env, "CKPT_NO_TMPFS": "1"})
        assert failed.returncode == StorageError.exit_code, failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert lines[0].startswith("ERROR: ") and "No space left on device" in lines[0]
        assert lines[-1].startswith("TIP: ")  # the message ends as written, nothing cut off
        assert runc_status(runc_root, container_name) == "running"
        assert not (small / "tmp").exists() or os.listdir(small / "tmp") == []
        assert os.listdir(small / "store" / "ingest") == []
    finally:
        _umount(small)
    assert os.listdir(scratch) == []
    assert _abandoned_tmpfs_dirs() - shm_before == set()

    saved = json.loads(ckpt("save", "--runc-root", str(runc_root), "--leave-running", container_name, "snap:v1",
                            "--json", home=ckpt_home, env=env, check=True).stdout)
    # A reader that takes its time: the output must be whole when it gets to it.
    proc = subprocess.Popen([sys.executable, "-m", "checkpointer", "inspect", "snap:v1", "--json"], cwd=REPO,
                            env={**os.environ, **env, "CKPT_HOME": str(ckpt_home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(1.0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    view = json.loads(out)
    assert view["digest"] == saved["digest"] and out.endswith(b"}\n")
    assert os.listdir(scratch) == []
    assert _abandoned_tmpfs_dirs() - shm_before == set()


@pytest.mark.parametrize("command", [["ls", "--json"], ["check", "--json"]], ids=["a few bytes", "a few KiB"])
def test_output_lost_to_a_full_disk_is_an_error(tmp_path, ckpt_home, command):
    full = _mounted(tmp_path / "full", "4k")
    try:
        (full / "filler").write_bytes(b"\0" * 4096)
        with open(full / "out.json", "wb") as out:
            res = subprocess.run([sys.executable, "-m", "checkpointer", *command], stdout=out,
                                 stderr=subprocess.PIPE, text=True, cwd=REPO,
                                 env={**os.environ, "CKPT_HOME": str(ckpt_home)}, timeout=120)
        assert res.returncode == StorageError.exit_code, res.stderr
        assert "could not write the output" in res.stderr and "No space left on device" in res.stderr
    finally:
        _umount(full)


def test_no_command_leaves_work_for_atexit(bundle_template, tmp_path, runc_root, ckpt_home, container_name):
    bundle = make_bundle(bundle_template, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    wait_for(bundle / "rootfs", lambda s: s.counter >= 3)
    small = _mounted(tmp_path / "small", "19m")
    report_path = tmp_path / "report.json"
    commands = [
        ["--home", str(small), "save", "--runc-root", str(runc_root), container_name,
         f"oci:{tmp_path}/layout:v1"],  # fails after the dump: disk full (see above)
        ["save", "--runc-root", str(runc_root), "--leave-running", container_name, "snap:v1"],
        ["inspect", "snap:v1", "--json"],
        ["export", "snap:v1", str(tmp_path / "snap.tar.zst")],
        ["ls", "--json"], ["check", "--json"], ["fsck", "--json"],
        ["save", "--runc-root", str(runc_root), "no-such-container", "x:v1"],
    ]
    try:
        res = subprocess.run([sys.executable, str(Path(__file__).with_name("exit_audit.py")), str(report_path),
                              json.dumps(commands)], cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CKPT_HOME": str(ckpt_home), "CKPT_NO_TMPFS": "1"})
    finally:
        _umount(small)
    assert res.returncode == 0, res.stderr
    report = json.loads(report_path.read_text())
    assert report["codes"][1:4] == [0, 0, 0] and report["codes"][0] == StorageError.exit_code, res.stderr
    assert set(report["registered"]) <= KNOWN_ATEXIT, report["registered"]
    # Preflight probes of a save that failed early are not waited for, on purpose; nothing else runs on.
    assert [t for t in report["threads"] if not t.startswith("preflight")] == []
    assert report["finalizers"] == []
