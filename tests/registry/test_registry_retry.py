"""The registry client follows the one retry policy (checkpointer/retry.py), for its HTTP requests
and for the resume of a cut download; a recorded sleep shows every pause it took."""
from __future__ import annotations

import pytest
from registry_helpers import client_for

from checkpointer.errors import RegistryError
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, RetryPolicy, pull
from checkpointer.registry.pull import MAX_RESUMES, RESUME_POLICY


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _serve(fake, art, repo="ckpt/x", tag="v1") -> RegistryRef:
    for data in art.payloads.values():
        fake.put_blob(data)
    fake.put_manifest(repo, tag, art.layout.read_blob(art.desc), mt.OCI_MANIFEST)
    return RegistryRef(fake.host, repo, tag)


def _timed(reg: Registry) -> FakeClock:
    clock = FakeClock()
    reg.transport.sleep, reg.transport.clock = clock.sleep, clock
    return clock


def test_the_default_policy_is_unchanged():
    with Registry("registry.invalid") as reg:
        assert reg.transport.policy == RetryPolicy(tries=5, base=0.2, cap=3.0, max_retry_after=60.0, deadline=None)


def test_requests_back_off_with_jitter_below_the_policy_bound(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.script("GET", r"/manifests/v1$", 503, count=100)
    policy = RetryPolicy(tries=6, base=0.5, cap=2.0)
    with client_for(fake_registry, retry=policy) as reg:
        clock = _timed(reg)
        with pytest.raises(RegistryError):
            pull(src, Layout(tmp_path / "dst", create=True), registry=reg)
    assert len(fake_registry.seen("GET", r"/manifests/v1$")) == 6
    assert len(clock.slept) == 5
    assert all(0 <= s <= b for s, b in zip(clock.slept, [0.5, 1.0, 2.0, 2.0, 2.0], strict=True)), clock.slept


def test_requests_stop_at_the_deadline(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    fake_registry.script("GET", r"/manifests/v1$", 503, count=100, headers={"Retry-After": "2"})
    with client_for(fake_registry, retry=RetryPolicy(tries=100, deadline=5.0)) as reg:
        clock = _timed(reg)
        with pytest.raises(RegistryError) as exc:
            pull(src, Layout(tmp_path / "dst", create=True), registry=reg)
    assert exc.value.status == 503
    assert clock.slept == [2.0, 2.0]      # a third pause would end at 6 s, past the deadline
    assert len(fake_registry.seen("GET", r"/manifests/v1$")) == 3


def test_the_resume_of_a_cut_download_pauses_by_the_policy(fake_registry, artifact, tmp_path):
    src = _serve(fake_registry, artifact)
    big = artifact.manifest.layers[1]
    fake_registry.cut_blob[big.digest] = 100_000
    dst = Layout(tmp_path / "dst", create=True)
    with client_for(fake_registry) as reg:
        clock = _timed(reg)
        pull(src, dst, registry=reg)
    assert dst.blob_path(big.digest).read_bytes() == artifact.payloads[big.digest]
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= RESUME_POLICY.backoff(1)


def test_the_resume_policy_keeps_the_old_bounds():
    # MAX_RESUMES resumes after the first try, each waiting at most min(2 s, 0.05 s * 2**n) as before
    assert RESUME_POLICY.tries == MAX_RESUMES + 1
    assert [RESUME_POLICY.backoff(n) for n in range(1, MAX_RESUMES + 1)] == \
        [min(2.0, 0.05 * 2 ** n) for n in range(1, MAX_RESUMES + 1)]
