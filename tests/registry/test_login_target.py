"""`ckpt login` stores credentials where the lookup reads first, so the new ones are the ones used,
and it says where it wrote them and where ckpt takes them from; `ckpt logout` says when others
are still stored (and used)."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from registry_helpers import make_artifact

from checkpointer.errors import AuthError
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, login, push
from checkpointer.registry import credentials as cr

REPO = Path(__file__).resolve().parents[2]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ckpt(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "checkpointer", *args], input=stdin, capture_output=True,
                          text=True, env=dict(os.environ), cwd=REPO, timeout=60)


@pytest.fixture
def stale_auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_basic) -> Path:
    """$REGISTRY_AUTH_FILE holds an old password for the registry (rotated since)."""
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {registry_basic.host: {"auth": _b64(f"{registry_basic.username}:old")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    return path


def test_after_login_the_lookup_returns_the_new_password(registry_basic, stale_auth_file):
    login(registry_basic.host, registry_basic.username, registry_basic.password)
    assert cr.lookup(registry_basic.host).password == registry_basic.password


def test_login_replaces_the_credentials_that_are_used(registry_basic, stale_auth_file, tmp_path):
    host = registry_basic.host
    res = _ckpt("login", host, "-u", registry_basic.username, "--password-stdin", "--json",
                stdin=registry_basic.password + "\n")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report == {"registry": host, "stored_in": str(stale_auth_file), "used_from": str(stale_auth_file)}
    assert cr.lookup(host).password == registry_basic.password
    docker = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    assert not docker.exists()  # not written to a file the lookup reads only later

    # and a client that finds its own credentials gets in with them
    art = make_artifact(tmp_path / "src", big=10)
    with Registry(host) as reg:
        push(art.layout, art.desc, RegistryRef(host, "ckpt/login", "v1"), registry=reg)

    text = _ckpt("login", host, "-u", registry_basic.username, "--password-stdin", stdin=registry_basic.password)
    assert text.returncode == 0, text.stderr
    assert f"stored in {stale_auth_file}" in text.stdout
    assert f"used from {stale_auth_file}" in text.stdout
    assert registry_basic.password not in text.stdout + text.stderr


def test_login_without_an_auth_file_writes_the_docker_config(registry_basic):
    res = _ckpt("login", registry_basic.host, "-u", registry_basic.username, "--password-stdin", "--json",
                stdin=registry_basic.password)
    assert res.returncode == 0, res.stderr
    docker = str(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    assert json.loads(res.stdout) == {"registry": registry_basic.host, "stored_in": docker, "used_from": docker}


def test_logout_says_which_credentials_are_still_used(registry_basic, tmp_path, monkeypatch):
    host = registry_basic.host
    xdg = Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(json.dumps({"auths": {host: {"auth": _b64("podman-user:pw")}}}))
    assert _ckpt("login", host, "-u", registry_basic.username, "--password-stdin",
                 stdin=registry_basic.password).returncode == 0
    assert cr.lookup(host).username == registry_basic.username

    out = _ckpt("logout", host, "--json")
    assert out.returncode == 0, out.stderr
    docker = str(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    assert json.loads(out.stdout) == {"registry": host, "removed_from": docker, "used_from": str(xdg)}
    assert cr.lookup(host).username == "podman-user"  # what the report said
    text = _ckpt("logout", host)
    assert f"still used from {xdg}" in text.stdout


@pytest.mark.parametrize("env_auth_file", [False, True])
@pytest.mark.parametrize("xdg_has_them", [False, True])
def test_what_is_stored_is_what_is_found(tmp_path, monkeypatch, env_auth_file, xdg_has_them):
    """Whatever files exist, credentials stored without naming a file are the ones the lookup returns."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    old = {"auths": {"reg.example": {"auth": _b64("old:old")}}}
    for path in (tmp_path / "docker" / "config.json", tmp_path / "home-auth.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(old))
    if env_auth_file:
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "home-auth.json"))
    else:
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    if xdg_has_them:
        xdg = tmp_path / "run" / "containers" / "auth.json"
        xdg.parent.mkdir(parents=True)
        xdg.write_text(json.dumps(old))
    stored = cr.store("reg.example", cr.Credentials("new", "new"))
    found = cr.find("reg.example")
    assert found is not None and found.credentials == cr.Credentials("new", "new")
    assert found.where == stored
    assert cr.login_file() == cr.auth_files()[0]


def test_a_refused_login_changes_no_file(registry_basic, stale_auth_file):
    before = stale_auth_file.read_bytes()
    res = _ckpt("login", registry_basic.host, "-u", registry_basic.username, "--password-stdin", stdin="wrong")
    assert res.returncode == AuthError.exit_code
    assert stale_auth_file.read_bytes() == before
