"""The one retry policy: how long to wait before trying again, and when to stop.

Every caller that tries again follows it: HTTP requests to a registry (registry/transport.py),
the resume of a cut blob download (registry/pull.py) and the hooks publisher's uploads
(hooks/publisher.py). A pause is drawn at random between 0 and an exponential backoff (full
jitter: clients that failed together do not come back together), never longer than `cap`. A
server's Retry-After is honoured up to `max_retry_after`. A fixed `schedule` of pauses (the
hooks' configured delays) replaces the backoff where a user chose them. An optional `deadline`
bounds the whole operation: no pause runs past it.

`policy.start(sleep=..., clock=...)` gives one operation's `Attempts`; tests pass a sleep that
records the pauses instead of waiting.
"""
from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    tries: int = 5                 # attempts in all, the first included
    base: float = 0.2              # the first backoff, doubled after each failure
    cap: float = 3.0               # longest backoff we pick ourselves
    max_retry_after: float = 60.0  # longest Retry-After we honour
    deadline: float | None = None  # seconds from the first attempt past which no pause runs
    schedule: tuple[float, ...] = ()  # fixed pauses, in order, instead of the backoff

    @classmethod
    def fixed(cls, pauses: Iterable[float], *, deadline: float | None = None) -> RetryPolicy:
        """A try, then one more after each of `pauses` (seconds), taken as they are."""
        schedule = tuple(float(p) for p in pauses)
        return cls(tries=len(schedule) + 1, schedule=schedule, deadline=deadline)

    def backoff(self, failures: int) -> float:
        """The longest pause after `failures` failed attempts (counted from 1), Retry-After aside."""
        if self.schedule:
            return self.schedule[min(failures, len(self.schedule)) - 1]
        return min(self.cap, self.base * 2.0 ** (failures - 1))

    def delay(self, failures: int, retry_after: str | float | None = None) -> float:
        """Seconds to wait after `failures` failed attempts: the server's Retry-After (an HTTP
        header value, or seconds) up to `max_retry_after`, else the backoff (jittered unless it
        comes from a fixed schedule)."""
        wanted = parse_retry_after(retry_after) if isinstance(retry_after, str) else retry_after
        if wanted is not None:
            return min(max(0.0, wanted), self.max_retry_after)
        if self.schedule:
            return self.backoff(failures)
        return random.uniform(0, self.backoff(failures))

    def start(self, *, sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Attempts:
        """The attempts of one operation under this policy, starting now."""
        return Attempts(self, sleep, clock)


class Attempts:
    """One operation's attempts: count each failure, get the pause before the next attempt (or
    None when the policy says stop), then take it.

        attempts = policy.start()
        while True:
            try: return do()
            except Transient:
                pause = attempts.failed()
                if pause is None: raise
                attempts.pause(pause)
    """

    def __init__(self, policy: RetryPolicy, sleep: Sleep, clock: Clock) -> None:
        self.policy = policy
        self.failures = 0
        self._sleep = sleep
        self._clock = clock
        self._started = clock()

    def failed(self, retry_after: str | float | None = None) -> float | None:
        """Count a failed attempt; the seconds to wait before the next one, or None when no attempt
        is left: the tries are spent, or the pause would run past the deadline."""
        self.failures += 1
        if self.failures >= self.policy.tries:
            return None
        pause = self.policy.delay(self.failures, retry_after)
        deadline = self.policy.deadline
        if deadline is not None and self._clock() - self._started + pause > deadline:
            return None
        return pause

    def pause(self, seconds: float) -> None:
        self._sleep(seconds)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds an HTTP Retry-After header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
