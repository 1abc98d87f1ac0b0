"""Fixtures for the registry client tests: real docker-registry servers in three set-ups, a fake
registry for fault injection, and a small artifact in an OCI layout."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry_helpers import Artifact, make_artifact  # noqa: E402  (also puts the repo root on sys.path)

from fake_registry import FakeRegistry  # noqa: E402
from support.registry_server import RegistryServer  # noqa: E402


@pytest.fixture(autouse=True)
def _no_stored_credentials(tmp_path_factory, monkeypatch):
    """Tests never read the real user's docker/containers credentials."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))


@pytest.fixture
def registry_none(tmp_path):
    with RegistryServer(tmp_path, auth="none") as server:
        yield server


@pytest.fixture
def registry_basic(tmp_path):
    with RegistryServer(tmp_path, auth="htpasswd") as server:
        yield server


@pytest.fixture
def registry_token(tmp_path):
    with RegistryServer(tmp_path, auth="token") as server:
        yield server


@pytest.fixture
def fake_registry():
    with FakeRegistry() as fake:
        yield fake


@pytest.fixture
def artifact(tmp_path) -> Artifact:
    return make_artifact(tmp_path / "src")
