"""The pod guard says what it could not put back: fire() raises RuntimeFailed naming it, where it
used to count as put back whatever happened."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from checkpointer.errors import RuntimeFailed
from checkpointer.runtime.pod_guard import PodGuard


def fake_runc(tmp_path: Path, status: str) -> list[str]:
    """A runc whose containers are always in `status` and whose resume does nothing."""
    script = tmp_path / "runc"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = state ] && echo '{{\"status\": \"{status}\"}}'\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)]


def test_a_container_that_stays_paused_is_reported(tmp_path: Path) -> None:
    guard = PodGuard(runc=fake_runc(tmp_path, "paused"), resume=["web-server"])
    with pytest.raises(RuntimeFailed, match="web-server stays paused") as err:
        guard.fire()
    assert "runc resume" in (err.value.hint or "")
    guard.fire()  # said once


def test_a_pod_put_back_fires_quietly(tmp_path: Path) -> None:
    PodGuard(runc=fake_runc(tmp_path, "running"), resume=["web-server"]).fire()


def test_keep_leaves_the_pod_alone(tmp_path: Path) -> None:
    guard = PodGuard(runc=fake_runc(tmp_path, "paused"), resume=["web-server"])
    guard.keep()
    guard.fire()
