"""What the command line shows of a result the porcelain hands back (the porcelain itself is
replaced here: these tests are about rendering only)."""
from __future__ import annotations

from pathlib import Path

import pytest

from checkpointer import cli
from checkpointer.porcelain import restore as restore_mod
from checkpointer.porcelain.restore import RestoreResult


def test_restore_shows_what_did_not_come_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                              tmp_path: Path) -> None:
    result = RestoreResult("web", 4242, tmp_path / "bundle", "sha256:" + "0" * 64,
                           warnings=("interface eth1 is missing after the restore",))
    monkeypatch.setattr(restore_mod, "restore", lambda *a, **kw: result)
    assert cli.main(["--home", str(tmp_path), "restore", "web:latest"]) == 0
    out, err = capsys.readouterr()
    assert "restored web into runc (pid 4242" in out
    assert "WARNING" in err and "interface eth1 is missing after the restore" in err
