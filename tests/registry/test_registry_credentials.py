"""Credentials: docker config.json, containers auth.json, credential helpers, login and logout."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from registry_helpers import make_artifact

from checkpointer.errors import AuthError
from checkpointer.oci.layout import Layout
from checkpointer.registry import Credentials, Registry, login, logout, pull, push
from checkpointer.registry import credentials as cr
from checkpointer.reference import RegistryRef

HELPER = r"""#!/usr/bin/env python3
import json, os, sys
store = os.environ["FAKE_HELPER_STORE"]
data = json.load(open(store)) if os.path.exists(store) else {}
action = sys.argv[1]
payload = sys.stdin.read()
with open(store + ".log", "a") as log:
    log.write(action + " " + (payload.strip() if action != "store" else json.loads(payload)["ServerURL"]) + "\n")
if action == "get":
    entry = data.get(payload.strip())
    if entry is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": payload.strip(), "Username": entry[0], "Secret": entry[1]}))
elif action == "store":
    obj = json.loads(payload)
    data[obj["ServerURL"]] = [obj["Username"], obj["Secret"]]
    json.dump(data, open(store, "w"))
elif action == "erase":
    if data.pop(payload.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump(data, open(store, "w"))
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """A `docker-credential-test` helper on PATH keeping its secrets in a JSON file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-test"
    script.write_text(HELPER)
    script.chmod(0o755)
    store = tmp_path / "helper-store.json"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HELPER_STORE", str(store))
    return store


def test_auths_entries(tmp_path):
    cfg = _write(tmp_path / "config.json", {"auths": {
        "reg.example:5000": {"auth": _b64("alice:pa:ss")},
        "https://other.example/v1/": {"username": "bob", "password": "pw"},
        "tok.example": {"identitytoken": "refresh-me"},
        "https://index.docker.io/v1/": {"auth": _b64("hubuser:hubpw")},
        "empty.example": {},
    }})
    assert cr.lookup("reg.example:5000", config_path=cfg) == Credentials("alice", "pa:ss")
    assert cr.lookup("REG.example:5000", config_path=cfg) == Credentials("alice", "pa:ss")
    assert cr.lookup("other.example", config_path=cfg) == Credentials("bob", "pw")
    assert cr.lookup("tok.example", config_path=cfg) == Credentials(identity_token="refresh-me")
    assert cr.lookup("docker.io", config_path=cfg) == Credentials("hubuser", "hubpw")
    assert cr.lookup("registry-1.docker.io", config_path=cfg) == Credentials("hubuser", "hubpw")
    assert cr.lookup("empty.example", config_path=cfg) is None
    assert cr.lookup("unknown.example", config_path=cfg) is None


def test_bad_auth_value_is_an_error(tmp_path):
    cfg = _write(tmp_path / "config.json", {"auths": {"reg.example": {"auth": "%%%"}}})
    with pytest.raises(AuthError):
        cr.lookup("reg.example", config_path=cfg)


def test_lookup_order(tmp_path, monkeypatch):
    docker = _write(tmp_path / "docker" / "config.json", {"auths": {
        "reg.example": {"auth": _b64("from-docker:1")}, "docker-only.example": {"auth": _b64("d:2")}}})
    podman = _write(tmp_path / "run" / "containers" / "auth.json", {"auths": {
        "reg.example": {"auth": _b64("from-xdg:1")}, "xdg-only.example": {"auth": _b64("x:3")}}})
    explicit = _write(tmp_path / "explicit.json", {"auths": {"reg.example": {"auth": _b64("from-env:1")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(docker.parent))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert cr.lookup("reg.example").username == "from-docker"
    assert cr.lookup("xdg-only.example").username == "x"
    assert cr.lookup("docker-only.example").username == "d"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert cr.lookup("reg.example").username == "from-env"
    assert podman.exists()


def test_cred_helpers_and_store(tmp_path, helper):
    helper.write_text(json.dumps({"reg.example": ["helper-user", "helper-secret"],
                                  "tok.example": ["<token>", "identity"]}))
    cfg = _write(tmp_path / "config.json", {
        "credHelpers": {"reg.example": "test"},
        "auths": {"reg.example": {"auth": _b64("inline:ignored")}, "inline.example": {"auth": _b64("in:line")}}})
    assert cr.lookup("reg.example", config_path=cfg) == Credentials("helper-user", "helper-secret")
    assert cr.lookup("inline.example", config_path=cfg) == Credentials("in", "line")
    store_cfg = _write(tmp_path / "store.json", {"credsStore": "test", "auths": {"inline.example": {"auth": _b64("in:line")}}})
    assert cr.lookup("tok.example", config_path=store_cfg) == Credentials(identity_token="identity")
    # not in the store: the inline entry still counts; nowhere: None
    assert cr.lookup("inline.example", config_path=store_cfg) == Credentials("in", "line")
    assert cr.lookup("nowhere.example", config_path=store_cfg) is None
    assert "get nowhere.example" in (helper.parent / (helper.name + ".log")).read_text()


def test_missing_helper_is_an_auth_error(tmp_path):
    cfg = _write(tmp_path / "config.json", {"credsStore": "does-not-exist-anywhere"})
    with pytest.raises(AuthError, match="not installed"):
        cr.lookup("reg.example", config_path=cfg)


def test_repr_hides_secrets():
    text = repr(Credentials("alice", "hunter2-secret")) + repr(Credentials(identity_token="tok-secret"))
    assert "hunter2" not in text and "tok-secret" not in text and "alice" in text


def test_store_and_erase_file(tmp_path):
    cfg = tmp_path / "d" / "config.json"
    _write(cfg, {"auths": {"keep.example": {"auth": _b64("k:k")}}, "psFormat": "table"})
    where = cr.store("https://reg.example:5000", Credentials("u", "p"), config_path=cfg)
    assert where == str(cfg)
    obj = json.loads(cfg.read_text())
    assert obj["auths"]["reg.example:5000"] == {"auth": _b64("u:p")}
    assert obj["auths"]["keep.example"] and obj["psFormat"] == "table"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert cr.erase("reg.example:5000", config_path=cfg) is True
    assert "reg.example:5000" not in json.loads(cfg.read_text())["auths"]
    assert cr.erase("reg.example:5000", config_path=cfg) is False


def test_store_and_erase_with_helper(tmp_path, helper):
    cfg = _write(tmp_path / "config.json", {"credsStore": "test"})
    where = cr.store("reg.example", Credentials("u", "p"), config_path=cfg)
    assert "docker-credential-test" in where
    assert json.loads(helper.read_text()) == {"reg.example": ["u", "p"]}
    assert json.loads(cfg.read_text())["auths"] == {"reg.example": {}}  # no secret in the file
    assert cr.lookup("reg.example", config_path=cfg) == Credentials("u", "p")
    assert cr.erase("reg.example", config_path=cfg) is True
    assert json.loads(helper.read_text()) == {}


def test_login_logout_against_registry(registry_basic, tmp_path):
    cfg = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    host = registry_basic.host
    with pytest.raises(AuthError) as exc:
        login(host, registry_basic.username, "wrong")
    assert f"ckpt login {host}" in exc.value.hint
    assert not cfg.exists()  # nothing stored for refused credentials
    assert login(host, registry_basic.username, registry_basic.password).stored_in == str(cfg)
    assert "s3cret" not in repr(cr.lookup(host))

    # a Registry without explicit credentials now finds them in the docker config
    art = make_artifact(tmp_path / "src", big=10)
    dest = RegistryRef(host, "ckpt/login", "v1")
    push(art.layout, art.desc, dest)
    assert pull(dest, Layout(tmp_path / "dst", create=True)).digest == art.desc.digest

    assert logout(host).removed_from == str(cfg)
    with Registry(host) as reg, pytest.raises(AuthError, match="requires credentials"):
        push(art.layout, art.desc, dest, registry=reg)


def test_login_with_token_server(registry_token):
    with pytest.raises(AuthError):
        login(registry_token.host, registry_token.username, "wrong", ca_dir=registry_token.cert_dir)
    assert registry_token.token_server.requests[-1]["user"] is None
    login(registry_token.host, registry_token.username, registry_token.password, ca_dir=registry_token.cert_dir)
    assert registry_token.token_server.requests[-1]["user"] == registry_token.username
    assert cr.lookup(registry_token.host) == Credentials(registry_token.username, registry_token.password)


def test_identity_token_uses_oauth2_refresh(tmp_path):
    from support.registry_server import RegistryServer
    with RegistryServer(tmp_path, auth="token", identity_token="refresh-abc") as server:
        art = make_artifact(tmp_path / "src", big=10)
        dest = RegistryRef(server.host, "ckpt/idtoken", "v1")
        with Registry(server.host, ca_dir=server.cert_dir, credentials=Credentials(identity_token="refresh-abc")) as reg:
            push(art.layout, art.desc, dest, registry=reg)
        assert [r["method"] for r in server.token_server.requests] == ["POST"]
        with Registry(server.host, ca_dir=server.cert_dir, credentials=Credentials(identity_token="stale")) as reg:
            with pytest.raises(AuthError):
                push(art.layout, art.desc, dest, registry=reg)
