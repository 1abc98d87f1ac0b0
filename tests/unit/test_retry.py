"""The one retry policy (checkpointer/retry.py): backoff with full jitter, its cap, Retry-After,
the number of tries, the deadline and a fixed schedule, with a recorded sleep and a fake clock."""
from __future__ import annotations

import email.utils
import time

from checkpointer.retry import RetryPolicy, parse_retry_after


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _run_until_given_up(policy: RetryPolicy, clock: FakeClock, retry_after: str | None = None) -> int:
    """Fail every attempt; return how many attempts ran."""
    attempts = policy.start(sleep=clock.sleep, clock=clock)
    ran = 0
    while True:
        ran += 1
        pause = attempts.failed(retry_after)
        if pause is None:
            return ran
        attempts.pause(pause)


def test_backoff_is_full_jitter_below_a_doubling_capped_bound():
    policy = RetryPolicy(tries=8, base=0.2, cap=3.0)
    bounds = [policy.backoff(n) for n in range(1, 8)]
    assert bounds == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]
    draws = {n: [policy.delay(n) for _ in range(200)] for n in range(1, 8)}
    for n, values in draws.items():
        assert all(0 <= v <= bounds[n - 1] for v in values), n
        assert len(set(values)) > 150, "full jitter: pauses are spread, not fixed"
        assert min(values) < bounds[n - 1] / 4 and max(values) > bounds[n - 1] * 3 / 4


def test_tries_count_the_first_attempt():
    clock = FakeClock()
    assert _run_until_given_up(RetryPolicy(tries=5, base=0.1, cap=1.0), clock) == 5
    assert len(clock.slept) == 4
    assert all(0 <= s <= min(1.0, 0.1 * 2 ** i) for i, s in enumerate(clock.slept))
    clock = FakeClock()
    assert _run_until_given_up(RetryPolicy(tries=1), clock) == 1 and clock.slept == []


def test_retry_after_is_honoured_up_to_its_limit():
    policy = RetryPolicy(tries=3, base=0.01, cap=0.01, max_retry_after=10)
    clock = FakeClock()
    _run_until_given_up(policy, clock, retry_after="4")
    assert clock.slept == [4.0, 4.0]          # the server's wish, not our backoff
    clock = FakeClock()
    _run_until_given_up(policy, clock, retry_after="120")
    assert clock.slept == [10.0, 10.0]        # no longer than max_retry_after
    assert policy.delay(1, 2.5) == 2.5 and policy.delay(1, -3) == 0.0
    assert 0 <= policy.delay(1, "soon") <= 0.01  # unreadable: the backoff


def test_parse_retry_after_takes_seconds_and_dates():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_deadline_stops_before_a_pause_that_would_pass_it():
    clock = FakeClock()
    policy = RetryPolicy(tries=100, base=1.0, cap=1.0, deadline=10.0)
    attempts = policy.start(sleep=clock.sleep, clock=clock)
    while (pause := attempts.failed(retry_after=3.0)) is not None:
        attempts.pause(pause)
    assert clock.slept == [3.0, 3.0, 3.0]     # a fourth would end at 12 s, past the 10 s deadline
    assert attempts.failures == 4


def test_deadline_counts_the_time_the_attempts_took():
    clock = FakeClock()
    attempts = RetryPolicy(tries=100, deadline=5.0).start(sleep=clock.sleep, clock=clock)
    clock.now += 4.9                           # a slow first attempt
    assert attempts.failed(retry_after=1.0) is None
    assert clock.slept == []


def test_fixed_schedule_pauses_exactly_as_given():
    policy = RetryPolicy.fixed([5, 30, 120])
    assert policy.tries == 4
    clock = FakeClock()
    assert _run_until_given_up(policy, clock) == 4
    assert clock.slept == [5.0, 30.0, 120.0]
    assert RetryPolicy.fixed(()).tries == 1
