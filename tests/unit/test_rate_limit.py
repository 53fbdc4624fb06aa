"""handlers/rate_limit.py: a token bucket on a fake clock (no waiting)."""

from __future__ import annotations

import pytest

from handlers.rate_limit import TokenBucket


class FakeClock:
    def __init__(self, now: float = 1024.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def takes(bucket: TokenBucket, count: int) -> list[bool]:
    return [bucket.take() for _ in range(count)]


def test_a_full_bucket_gives_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=5, burst=10, clock=FakeClock())
    assert takes(bucket, 12) == [True] * 10 + [False] * 2


# Rates and times that binary floating point holds exactly.
@pytest.mark.parametrize(
    "elapsed,allowed", [(0.0, 0), (0.125, 0), (0.24, 0), (0.25, 1), (0.49, 1), (0.5, 2), (1.0, 4), (1.99, 7), (2.0, 8)]
)
def test_an_empty_bucket_refills_at_the_rate(elapsed: float, allowed: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=8, clock=clock)
    takes(bucket, 8)
    clock.advance(elapsed)
    assert takes(bucket, 10) == [True] * allowed + [False] * (10 - allowed)


@pytest.mark.parametrize("idle", [2.0, 3.0, 60.0, 1e6])
def test_refill_is_capped_at_the_burst(idle: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    takes(bucket, 10)
    clock.advance(idle)
    assert takes(bucket, 11) == [True] * 10 + [False]


def test_a_new_bucket_starts_full_not_with_the_clock_reading() -> None:
    clock = FakeClock(now=1e9)  # a large monotonic reading must not turn into tokens
    bucket = TokenBucket(rate=5, burst=3, clock=clock)
    assert takes(bucket, 4) == [True, True, True, False]


def test_refused_takes_cost_nothing_and_partial_tokens_add_up() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(3):  # three refusals, a quarter second apart, then a whole token
        clock.advance(0.125)
        assert not bucket.take()
    clock.advance(0.125)
    assert bucket.take() and not bucket.take()


def test_steady_sending_at_the_rate_is_never_refused() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    results = []
    for _ in range(100):
        results.append(bucket.take())
        clock.advance(0.25)
    assert all(results)


def test_a_time_that_goes_backwards_adds_no_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5, burst=2, clock=clock)
    takes(bucket, 2)
    clock.advance(-10)
    assert not bucket.take()


@pytest.mark.parametrize("rate", [1, 0.5])
def test_a_slow_rate_still_limits(rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=2, clock=FakeClock())
    assert takes(bucket, 3) == [True, True, False]


@pytest.mark.parametrize("rate", [0, 0.0, -1])
def test_a_rate_of_zero_never_limits(rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=1, clock=FakeClock())
    assert all(takes(bucket, 1000))
