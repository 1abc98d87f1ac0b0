"""Small pure functions of the registry client: challenge and Retry-After parsing, backoff, hosts."""
from __future__ import annotations

import email.utils
import time

import pytest

from checkpointer.errors import NotFound
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.model import Descriptor, Index
from checkpointer.registry.auth import parse_challenge, scope
from checkpointer.registry.pull import choose_manifest
from checkpointer.registry.transport import RetryPolicy, is_loopback, parse_retry_after

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg.example",
                      "scope": "repository:a/b:pull,push repository:c:pull", "error": "insufficient_scope"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert scope("a/b", "pull", "push") == "repository:a/b:pull,push"


def test_retry_after_and_backoff():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31
    policy = RetryPolicy(base=0.2, cap=3.0, max_retry_after=10)
    assert policy.delay(1, "120") == 10          # capped
    assert all(0 <= policy.delay(n) <= min(3.0, 0.2 * 2 ** (n - 1)) for n in range(1, 8) for _ in range(20))


def test_is_loopback():
    for host in ("localhost", "localhost:5000", "127.0.0.1:5000", "127.9.9.9", "[::1]:5000", "[::1]"):
        assert is_loopback(host), host
    for host in ("registry.example", "10.0.0.1:5000", "[2001:db8::1]:443", "localhost.example.com"):
        assert not is_loopback(host), host


def test_choose_manifest():
    amd = Descriptor(mt.OCI_MANIFEST, D1, 10, platform={"os": "linux", "architecture": "amd64"})
    arm = Descriptor(mt.OCI_MANIFEST, D2, 10, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})
    index = Index((amd, arm))
    assert choose_manifest(index, "linux/amd64", "x") == amd
    assert choose_manifest(index, "linux/arm64", "x") == arm       # variant not asked for
    assert choose_manifest(index, "linux/arm64/v8", "x") == arm
    with pytest.raises(NotFound):
        choose_manifest(index, "linux/riscv64", "x")
    lone = Index((Descriptor(mt.OCI_MANIFEST, D1, 10),))
    assert choose_manifest(lone, None, "x").digest == D1           # an artifact: its one manifest
