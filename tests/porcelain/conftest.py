"""Fixtures for the porcelain's tests, which run as any user: a private $CKPT_HOME and tmpfs
stand-in, the FakeEngine in place of runc (fake_engine.py), the fake registry of tests/registry,
and `ckpt` run in this process through its one error boundary (cli.main)."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "registry"))

from fake_engine import FakeEngine, World  # noqa: E402
from porcelain_helpers import FakePodman, Run  # noqa: E402
from fake_registry import FakeRegistry  # noqa: E402

from checkpointer import cli  # noqa: E402
from checkpointer.criu import probe  # noqa: E402
from checkpointer.porcelain import engines, home  # noqa: E402
from checkpointer.porcelain.places import registry as places_registry  # noqa: E402


@pytest.fixture(autouse=True)
def private_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$CKPT_HOME, $HOME and the tmpfs for work dirs, all under tmp_path; no stored credentials;
    the CRIU version fixed (these tests run where CRIU may be missing); a fresh registry client cache."""
    monkeypatch.setenv("CKPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "user" / ".docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("CKPT_NO_TMPFS", raising=False)
    monkeypatch.setattr(home, "TMPFS", tmp_path / "shm")
    (tmp_path / "shm").mkdir(mode=0o755)
    monkeypatch.setattr(probe, "version", lambda *a, **kw: "4.2.1")
    monkeypatch.setattr(places_registry, "_clients", {})
    return tmp_path


@pytest.fixture
def podman_world(monkeypatch: pytest.MonkeyPatch) -> World:
    """Podman's containers: one running, "db" (FakeEngine standing in for Podman)."""
    world = World(states={"db": "running"})
    monkeypatch.setitem(engines._ENGINES, "podman", lambda ctx: FakePodman(ctx, world))
    return world


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    """A fake host with one running container, "web", that the runc engine finds (FakeEngine), and
    none in Podman (unless podman_world is asked for too)."""
    world = World()
    monkeypatch.setitem(engines._ENGINES, "runc", lambda ctx: FakeEngine(ctx, world))
    if not isinstance(engines._ENGINES["podman"](None), FakePodman):
        monkeypatch.setitem(engines._ENGINES, "podman", lambda ctx: FakePodman(ctx, World(states={})))
    return world


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake


@pytest.fixture
def ckpt(capsys: pytest.CaptureFixture) -> callable:
    """Run a ckpt command in this process, as `ckpt` would (cli.main): its exit code and output."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Run(code, out, " ".join(err.split()))

    return run
