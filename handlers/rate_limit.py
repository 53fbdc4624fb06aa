"""A token bucket per connection: ``rate`` tokens a second, at most ``burst`` saved."""

from __future__ import annotations

import time
from typing import Callable


class TokenBucket:
    __slots__ = ("_rate", "_burst", "_tokens", "_clock", "_stamp")  # one per user, per address, per refusing socket

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty. A rate of 0 never limits."""
        if self._rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
