"""The token buckets behind 429s, on a clock the test moves: a burst of ``rate``, then ``rate`` a second, the
wait said exactly, each key its own bucket, and idle buckets forgotten only once they are full again."""

from __future__ import annotations

import pytest

from azimds.emulator.service.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_rate_then_rate_a_second_and_the_wait_said_exactly():
    clock = Clock()
    limiter = RateLimiter(5, clock=clock)
    assert [limiter.allow("a") for _ in range(5)] == [0.0] * 5
    assert limiter.allow("a") == pytest.approx(0.2)  # one token comes back in a fifth of a second
    assert limiter.allow("b") == 0.0  # another caller has its own bucket
    clock.now += 0.1
    assert limiter.allow("a") == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.allow("a") == 0.0
    clock.now += 60
    assert [limiter.allow("a") for _ in range(6)] == [0.0] * 5 + [pytest.approx(0.2)]  # never more than a burst


def test_off_at_zero_and_a_bucket_not_yet_full_survives_the_pruning_of_idle_ones():
    """Past 50,000 callers the limiter forgets buckets that are full again; one still refilling is kept, so its
    caller does not get a whole burst early."""
    clock = Clock()
    assert all(RateLimiter(0, clock=clock).allow("a") == 0.0 for _ in range(100))
    limiter = RateLimiter(5, clock=clock)
    assert [limiter.allow("drained") for _ in range(5)] == [0.0] * 5
    for n in range(50_001):
        limiter.allow(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    clock.now += 0.5  # the 50,001 are full again; "drained" has 2.5 tokens
    assert limiter.allow("newcomer") == 0.0  # the 50,002nd caller: the idle ones are forgotten first
    assert [limiter.allow("drained") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
