"""`--ca-dir` really applies: a TLS registry whose CA is only in that directory is reachable with
it, and refused without it. (requests 2.32.0-2.32.2 ignored the SSL context of an HTTPAdapter
subclass, so with them the first half fails: pyproject.toml asks for >= 2.32.3.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checkpointer.errors import Unreachable
from support.registry_server import RegistryServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tls_registry(tmp_path: Path):
    with RegistryServer(tmp_path, auth="htpasswd", tls=True) as server:
        yield server


def _login(server, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "checkpointer", "login", server.host, "-u", server.username,
                           "--password-stdin", *extra], input=server.password, capture_output=True, text=True,
                          env=dict(os.environ), cwd=REPO, timeout=120)


def test_a_registry_whose_ca_is_only_in_ca_dir_is_reachable_with_it(tls_registry) -> None:
    res = _login(tls_registry, "--ca-dir", str(tls_registry.cert_dir))
    assert res.returncode == 0, res.stderr
    assert "login succeeded" in res.stdout


def test_without_ca_dir_it_is_refused(tls_registry) -> None:
    res = _login(tls_registry)
    assert res.returncode == Unreachable.exit_code, res.stderr
    assert "certificate" in res.stderr and "--ca-dir" in res.stderr
