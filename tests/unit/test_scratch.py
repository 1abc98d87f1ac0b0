"""Work directories in memory (tmpfs): root's CRIU images never go into a directory another user
made, linked or can enter."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from checkpointer.errors import UsageError
from checkpointer.porcelain import home as home_mod
from checkpointer.porcelain.home import Home

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (a directory of another user)")
OTHER_UID = 65534  # nobody


@pytest.fixture
def shm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /dev/shm: world-writable and sticky, as there."""
    path = tmp_path / "shm"
    path.mkdir()
    path.chmod(0o1777)
    monkeypatch.setattr(home_mod, "TMPFS", path)
    monkeypatch.delenv("CKPT_NO_TMPFS", raising=False)
    return path


def _parent(shm: Path) -> Path:
    return shm / ("ckpt" if os.geteuid() == 0 else f"ckpt-{os.geteuid()}")


def _work(tmp_path: Path) -> Path:
    with Home(tmp_path / "home").workdir("save-", size_hint=1) as work:
        mode = stat.S_IMODE(os.lstat(work).st_mode)
        assert mode == 0o700 and os.lstat(work).st_uid == os.geteuid()
        return work


def test_scratch_goes_to_a_private_directory_in_memory(tmp_path: Path, shm: Path) -> None:
    work = _work(tmp_path)
    parent = _parent(shm)
    assert work.parent == parent
    st = os.lstat(parent)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert not work.exists()


@needs_root
@pytest.mark.parametrize("mode", [0o700, 0o777])
def test_a_directory_planted_by_another_user_is_not_used(tmp_path: Path, shm: Path, mode: int,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    planted = _parent(shm)
    planted.mkdir()
    planted.chmod(mode)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with caplog.at_level(logging.WARNING):
        work = _work(tmp_path)
    assert not work.is_relative_to(shm), "root's memory images went into another user's directory"
    assert work.parent == tmp_path / "home" / "tmp"
    assert os.listdir(planted) == []
    assert os.lstat(planted).st_uid == OTHER_UID
    assert any(str(planted) in r.getMessage() for r in caplog.records)


def test_a_symlink_in_its_place_is_not_followed(tmp_path: Path, shm: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    _parent(shm).symlink_to(elsewhere)
    work = _work(tmp_path)
    assert not work.is_relative_to(shm)
    assert os.listdir(elsewhere) == []


def test_a_directory_others_can_write_is_not_used_even_if_ours(tmp_path: Path, shm: Path) -> None:
    parent = _parent(shm)
    parent.mkdir()
    parent.chmod(0o777)  # others may have planted entries (or links) in it already
    work = _work(tmp_path)
    assert not work.is_relative_to(shm)


def test_our_own_directory_made_by_an_older_version_is_tightened_and_used(tmp_path: Path, shm: Path) -> None:
    parent = _parent(shm)
    parent.mkdir()
    parent.chmod(0o755)  # what earlier releases left
    work = _work(tmp_path)
    assert work.parent == parent
    assert stat.S_IMODE(os.lstat(parent).st_mode) == 0o700


def test_a_tmpfs_anyone_can_rename_in_is_not_used(tmp_path: Path, shm: Path) -> None:
    shm.chmod(0o777)  # not sticky: another user could swap our directory for theirs after the check
    work = _work(tmp_path)
    assert not work.is_relative_to(shm)


@needs_root
def test_fsck_is_told_of_our_own_directory_only(tmp_path: Path, shm: Path) -> None:
    assert home_mod.private_tmpfs_parent(create=False) is None  # none yet, and none made
    assert not _parent(shm).exists()
    _work(tmp_path)
    assert home_mod.private_tmpfs_parent(create=False) == _parent(shm)
    os.chown(_parent(shm), OTHER_UID, OTHER_UID)
    assert home_mod.private_tmpfs_parent(create=False) is None


@needs_root
def test_fsck_neither_walks_nor_cleans_a_parent_planted_by_another_user(tmp_path: Path, shm: Path) -> None:
    from checkpointer.porcelain.fsck import fsck

    planted = _parent(shm)
    planted.mkdir()
    (planted / "save-x").mkdir()
    os.chown(planted, OTHER_UID, OTHER_UID)
    _, leftovers = fsck(home=Home(tmp_path / "home"), repair=True, full=False)
    assert leftovers == [] and (planted / "save-x").is_dir()


def test_fsck_is_not_blocked_by_a_fifo_planted_as_a_lock(tmp_path: Path, shm: Path) -> None:
    from checkpointer.porcelain.fsck import fsck

    parent = _parent(shm)
    parent.mkdir(mode=0o700)
    dead = parent / "save-dead"
    dead.mkdir()
    os.mkfifo(dead / ".owner")  # open(O_RDONLY) of a FIFO waits for a writer without O_NONBLOCK
    linked = parent / "save-linked"
    linked.mkdir()
    (linked / ".owner").symlink_to(tmp_path / "elsewhere")
    _, leftovers = fsck(home=Home(tmp_path / "home"), repair=False, full=False)
    assert dead in leftovers and linked not in leftovers


@pytest.mark.parametrize("name", ["..", ".", "../victim", "a/b", "", ".hidden", "-x", "x" * 300])
def test_a_container_id_that_is_no_plain_path_component_has_no_bundle(tmp_path: Path, name: str) -> None:
    """A checkpoint (perhaps hostile) or --name names the bundle directory a restore makes and,
    when one is left from a killed restore, removes: `..` would be CKPT_HOME itself."""
    with pytest.raises(UsageError, match="not a container id"):
        Home(tmp_path / "home").bundle_path(name)
    assert Home(tmp_path / "home").bundle_path("web.v1_2-b") == tmp_path / "home" / "containers" / "web.v1_2-b"


def test_the_home_is_private_whichever_command_makes_it(tmp_path: Path) -> None:
    home = Home(tmp_path / "a" / "home")
    home.ensure_root()
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
