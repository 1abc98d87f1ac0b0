"""The hooks' parts on their own: runc command lines, destinations, jobs, the spool, install."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hook_helpers import REPO, hooks_cli

from checkpointer.criu.options import CriuOptions
from checkpointer.errors import NotFound, UsageError
from checkpointer.hooks import capture, destination, keys, oci_hook, procfs
from checkpointer.hooks.install import BEGIN, END, add_block, remove_block
from checkpointer.hooks.job import FAILED, PUBLISHED, SPOOLED, Job
from checkpointer.hooks.settings import HookSettings
from checkpointer.hooks.spool import Spool
from checkpointer.reference import LayoutRef, RegistryRef, StoreRef

# -- who is checkpointing -----------------------------------------------------------------------


@pytest.mark.parametrize("argv, root, cid", [
    (["runc", "--root", "/tmp/r", "checkpoint", "--image-path", "/i", "--work-path", "/w", "web"], "/tmp/r", "web"),
    (["/usr/bin/runc", "checkpoint", "--image-path", "/var/lib/c/x/checkpoint", "--work-path", "/var/lib/c/x",
      "3c28"], None, "3c28"),  # podman, as read from /proc on this host
    (["runc", "--root", "/run/containerd/runc/k8s.io", "--log", "/l.json", "--log-format", "json", "checkpoint",
      "--image-path", "/i", "--leave-running", "--tcp-established", "k8s-ctr"], "/run/containerd/runc/k8s.io",
     "k8s-ctr"),  # containerd's shim (go-runc)
    (["runc", "--root=/run/runc", "--systemd-cgroup", "checkpoint", "--file-locks=true", "crio-ctr"], "/run/runc",
     "crio-ctr"),
])
def test_runc_command_lines(argv, root, cid):
    call = procfs.parse_runc_argv(argv)
    assert call is not None
    assert call["container_id"] == cid
    assert call["root"] == (Path(root) if root else None)


def test_runc_flags_become_criu_options():
    call = procfs.parse_runc_argv(["runc", "checkpoint", "--leave-running", "--tcp-established", "--ext-unix-sk",
                                   "--shell-job", "--file-locks", "c1"])
    assert call["options"] == CriuOptions(leave_running=True, tcp_established=True, ext_unix_sk=True,
                                          shell_job=True, file_locks=True)
    assert procfs.parse_runc_argv(["runc", "checkpoint", "--pre-dump", "c1"])["pre_dump"]
    assert procfs.parse_runc_argv(["runc", "checkpoint", "--lazy-pages", "c1"])["remote_pages"]
    assert procfs.parse_runc_argv(["runc", "checkpoint", "--page-server", "10.0.0.1:27", "c1"])["remote_pages"]
    assert procfs.parse_runc_argv(["runc", "checkpoint", "--file-locks=false", "c1"])["options"] == CriuOptions()


@pytest.mark.parametrize("argv", [
    [], ["runc", "restore", "x"], ["runc", "checkpoint"], ["criu", "dump", "-t", "1"], ["podman", "checkpoint", "x"],
    ["runc", "checkpoint", "a", "b"],
])
def test_not_a_runc_checkpoint(argv):
    assert procfs.parse_runc_argv(argv) is None


def test_ancestry_of_a_process_without_runc():
    assert procfs.find_runc_checkpoint(os.getpid()) is None
    assert 0 <= procfs.age(os.getpid()) < 3600 * 24


# -- destinations -------------------------------------------------------------------------------


def test_destination_templates():
    when = datetime(2026, 11, 28, 8, 45, 0, tzinfo=timezone.utc)
    out = destination.expand(" reg.example.com/team/web:{timestamp} ", container_id="3C2822b3caaf25bc", when=when)
    assert out == "reg.example.com/team/web:20261128T084500Z"
    assert destination.expand("r.io/x:{id}", container_id="3C2822b3caaf25bc", when=when) == "r.io/x:3c2822b3caaf"


def test_destination_policy():
    assert isinstance(destination.check("reg.example.com/team/web:v1", ()), RegistryRef)
    assert isinstance(destination.check("web:v1", ()), StoreRef)
    with pytest.raises(UsageError, match="path on the host"):
        destination.check("oci:/etc/evil:v1", ())
    allow = ("reg.example.com/team", "oci:/srv/checkpoints/")
    assert isinstance(destination.check("reg.example.com/team/web:v1", allow), RegistryRef)
    assert isinstance(destination.check("reg.example.com/team:v1", allow), RegistryRef)
    assert isinstance(destination.check("oci:/srv/checkpoints/web:v1", allow), LayoutRef)
    for refused in ("reg.example.com/teammate/web:v1", "other.example.com/team/web:v1", "web:v1"):
        with pytest.raises(UsageError, match="not allowed"):
            destination.check(refused, allow)
    with pytest.raises(UsageError):
        destination.check("Not A Ref", ())


# -- jobs and the spool -------------------------------------------------------------------------


def test_job_round_trip_and_history():
    job = Job(id="j1", state=SPOOLED, destination="r.io/x:v1", container_id="c",
              criu_options=CriuOptions(tcp_established=True))
    moved = job.moved(FAILED, "it broke", error="boom", attempts=2)
    assert (moved.state, moved.error, moved.attempts, moved.history[-1][1]) == (FAILED, "boom", 2, "it broke")
    assert Job.from_json(json.loads(json.dumps(moved.to_json()))) == moved
    assert Job.from_json({**moved.to_json(), "a_field_from_the_future": 1}) == moved


def test_spool_claims_once_and_locks(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.claim("j1") is not None
    assert spool.claim("j1") is None  # CRIU's second post-dump call
    assert oct(os.stat(spool.root).st_mode & 0o777) == "0o700"
    spool.save(Job(id="j1", state=SPOOLED, destination="d", container_id="c"))
    assert spool.load("j1").state == SPOOLED
    with spool.lock("j1") as mine:
        assert mine
        other = subprocess.run([sys.executable, "-c", (
            "import sys; sys.path.insert(0, sys.argv[1]); from checkpointer.hooks.spool import Spool; "
            "print(Spool(sys.argv[2]).busy('j1'))"), str(REPO), str(spool.root)],
            capture_output=True, text=True, check=True)
        assert other.stdout.strip() == "True"
    assert not spool.busy("j1")
    with pytest.raises(NotFound):
        spool.load("nope")
    with pytest.raises(NotFound):
        with spool.lock("nope"):
            pass
    assert not spool.busy("nope")
    with pytest.raises(NotFound):
        spool.job_dir("../escape")


def test_spool_prunes_old_published_jobs(tmp_path):
    spool = Spool(tmp_path / "spool")
    for i in range(5):
        spool.claim(f"j{i}")
        spool.save(Job(id=f"j{i}", state=PUBLISHED if i < 4 else FAILED, destination="d", container_id="c",
                       updated=f"2026-11-28T08:00:0{i}.000000Z"))
    assert spool.prune(keep=2) == 2
    assert [j.id for j in spool.jobs()] == ["j2", "j3", "j4"]


def test_images_are_hardlinked_on_one_filesystem_and_copied_across(tmp_path):
    src = tmp_path / "images"
    (src / "sub").mkdir(parents=True)
    (src / "pages-1.img").write_bytes(b"p" * 10000)
    (src / "sub" / "x.img").write_bytes(b"x")
    taken = capture.take_images(src, tmp_path / "linked")
    assert (taken.files, taken.bytes, taken.linked) == (2, 10001, 2)
    assert os.stat(tmp_path / "linked" / "pages-1.img").st_ino == os.stat(src / "pages-1.img").st_ino
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        other = shm / f"ckpt-hooks-test-{os.getpid()}-{time.time_ns()}"
        try:
            taken = capture.take_images(src, other)
            assert (taken.files, taken.linked) == (2, 0)
            assert (other / "pages-1.img").read_bytes() == b"p" * 10000
        finally:
            subprocess.run(["rm", "-rf", str(other)], check=False)


# -- settings and install -----------------------------------------------------------------------


def test_settings_defaults_file_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(keys.ENV_SPOOL, raising=False)
    monkeypatch.setenv("CKPT_HOME", str(tmp_path / "home"))
    missing = HookSettings.load(tmp_path / "absent.json")
    assert (missing.source, missing.spool) == (None, tmp_path / "home" / "spool")
    conf = tmp_path / "hooks.json"
    conf.write_text(json.dumps({keys.CFG_HOME: "/h", keys.CFG_RETRY_DELAYS: [1, 2], keys.CFG_ALLOW: ["r.io/"]}))
    loaded = HookSettings.load(conf)
    assert (loaded.home, loaded.spool, loaded.retry_delays, loaded.allow) == (Path("/h"), Path("/h/spool"),
                                                                               (1.0, 2.0), ("r.io/",))
    monkeypatch.setenv(keys.ENV_SPOOL, str(tmp_path / "elsewhere"))
    assert HookSettings.load(conf).spool == tmp_path / "elsewhere"
    assert HookSettings.from_json(HookSettings.load(conf).to_json()).retry_delays == (1.0, 2.0)
    conf.write_text("{broken")
    with pytest.raises(UsageError):
        HookSettings.load(conf)


def test_runc_conf_block_keeps_what_was_there(tmp_path):
    conf = tmp_path / "runc.conf"
    conf.write_text("tcp-established\n# the admin's own comment")
    assert add_block(conf, "action-script /a") is False
    assert add_block(conf, "action-script /b") is False  # installing again replaces the block
    text = conf.read_text()
    assert text.count(BEGIN) == 1 and "action-script /b" in text and "/a" not in text
    assert text.startswith("tcp-established\n# the admin's own comment\n")
    assert remove_block(conf, delete_if_empty=True)
    assert conf.read_text() == "tcp-established\n# the admin's own comment\n"
    fresh = tmp_path / "new" / "runc.conf"
    assert add_block(fresh, "action-script /a") is True
    assert remove_block(fresh, delete_if_empty=True) and not fresh.exists()
    assert END not in conf.read_text()


def test_install_status_uninstall_in_a_private_prefix(tmp_path):
    prefix, home = tmp_path / "p", tmp_path / "home"
    out = json.loads(hooks_cli("install", "--prefix", str(prefix), "--home", str(home), "--allow", "r.io/team",
                               "--json").stdout)
    action = prefix / "libexec" / "ckpt" / "criu-action"
    assert str(action) in out["files"] and os.access(action, os.X_OK)
    script = action.read_text()
    assert f"'{sys.executable}' -I" in script and f"'{REPO}'" in script and "@" not in script
    assert (prefix / "etc" / "ckpt" / "criu.conf").read_text().strip().endswith(f"action-script {action}")
    assert f"action-script {action}" in (prefix / "etc" / "criu" / "runc.conf").read_text()
    hook = json.loads((prefix / "etc" / "containers" / "oci" / "hooks.d" / "ckpt-restore-from.json").read_text())
    assert hook["hook"]["path"] == str(prefix / "libexec" / "ckpt" / "oci-hook")
    assert hook["when"]["annotations"] == {"^dev\\.ckpt\\.restore-from$": ".+"}
    config = json.loads((prefix / "etc" / "ckpt" / "hooks.json").read_text())
    assert config[keys.CFG_PYTHON] == sys.executable and config[keys.CFG_ALLOW] == ["r.io/team"]
    assert config[keys.CFG_SPOOL] == str(home / "spool")

    status = json.loads(hooks_cli("status", "--prefix", str(prefix), "--json").stdout)
    assert status["install"]["installed"] and status["install"]["runc_conf_ok"]
    assert all(present for _, present in status["install"]["files"]) and status["jobs"] == []

    hooks_cli("install", "--prefix", str(prefix), "--home", str(home))  # again: replaces, never duplicates
    assert (prefix / "etc" / "criu" / "runc.conf").read_text().count("action-script") == 1

    removed = json.loads(hooks_cli("uninstall", "--prefix", str(prefix), "--json").stdout)["removed"]
    assert str(action) in removed
    assert sorted(p.name for p in prefix.rglob("*") if p.is_file()) == []
    assert (home / "spool").is_dir()  # kept without --purge
    assert "not installed" in hooks_cli("status", "--prefix", str(prefix)).stdout
    res = hooks_cli("uninstall", "--prefix", str(prefix), check=False)
    assert res.returncode == UsageError.exit_code and "no hooks are installed" in res.stderr
    res = hooks_cli("retry", "no-such-job", "--prefix", str(prefix), check=False)
    assert res.returncode == 1 and "no hook job 'no-such-job'" in res.stdout


def test_install_refuses_an_interpreter_that_cannot_run_the_hooks(tmp_path):
    from checkpointer.errors import MissingDependency
    from checkpointer.hooks.install import install
    from checkpointer.hooks.paths import InstallPaths

    settings = HookSettings(home=tmp_path, spool=tmp_path / "spool")
    with pytest.raises(MissingDependency, match="cannot run the hooks"):
        install(InstallPaths.make(tmp_path / "p"), settings, python="/bin/false")
    assert not (tmp_path / "p").exists()


# -- the action script outside a checkpoint, and the OCI hook ----------------------------------


def test_action_script_returns_at_once_outside_a_dump(tmp_path, installed):
    script = installed.prefix / "libexec" / "ckpt" / "criu-action"
    for action in ("pre-dump", "network-lock", "post-restore", ""):
        res = subprocess.run([str(script)], env={"CRTOOLS_SCRIPT_ACTION": action, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True, timeout=10)
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    # post-dump, but not under `runc checkpoint`: nothing to publish, still exit 0
    res = subprocess.run([str(script)], env={"CRTOOLS_SCRIPT_ACTION": "post-dump", "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0
    assert not (installed.spool / "jobs").exists() or not list((installed.spool / "jobs").iterdir())


def test_oci_hook_verdicts():
    assert oci_hook.verdict({"id": "c", "annotations": {}}) == (True, "")
    allowed, message = oci_hook.verdict({"id": "web", "annotations": {keys.RESTORE_FROM: "r.io/x/web:v1"}})
    assert not allowed and "ckpt restore --if-running-ok --name web r.io/x/web:v1" in message
    allowed, message = oci_hook.verdict({"id": "web", "annotations": {keys.RESTORE_FROM: "r.io/x/web:v1",
                                                                      keys.RESTORE_POLICY: "warn"}})
    assert allowed and "starts fresh" in message
    allowed, message = oci_hook.verdict({"id": "web", "annotations": {keys.RESTORE_FROM: "Bad Ref"}})
    assert not allowed and "not a valid reference" in message


def test_oci_hook_program(installed):
    hook = installed.prefix / "libexec" / "ckpt" / "oci-hook"
    state = {"ociVersion": "1.0.2", "id": "web", "status": "creating", "pid": 1, "bundle": "/b",
             "annotations": {keys.RESTORE_FROM: "r.io/x/web:v1"}}
    res = subprocess.run([str(hook), "createRuntime"], input=json.dumps(state), capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1 and "ckpt restore --if-running-ok" in res.stderr
    assert "an OCI hook cannot restore" in (installed.spool / "hooks.log").read_text()
    state["annotations"] = {}
    res = subprocess.run([str(hook), "createRuntime"], input=json.dumps(state), capture_output=True, text=True,
                         timeout=30)
    assert (res.returncode, res.stderr) == (0, "")


def test_quick_look_reads_runc_command_lines(monkeypatch):
    from checkpointer.hooks import quick

    monkeypatch.setenv("CRTOOLS_IMAGE_DIR", "/proc/4242/fd/4")
    assert quick.criu_pid() == 4242
    monkeypatch.delenv("CRTOOLS_IMAGE_DIR")
    assert quick.criu_pid() == os.getppid()
    me = quick.job_id(os.getpid(), "web/1 x")
    assert me.endswith(f"-web-1-x-{os.getpid()}") and len(me.split("-")[0]) == 15
    assert abs(quick.started(os.getpid()) - (time.time() - procfs.age(os.getpid()))) < 1
    assert quick._root([b"--root", b"/r", b"--debug"]) == b"/r"
    assert quick._root([b"--log", b"/l", b"-root=/s"]) == b"/s"
    assert quick._root([b"--debug"]) == (b"/run/runc" if os.geteuid() == 0 else None)
    assert quick.runc_call(os.getpid()) is None  # pytest was not started by `runc checkpoint`
    assert quick.main() == 0
