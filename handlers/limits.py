"""Limits that span connections (docs/protocol.md, "Limits and timeouts").

``ConnectionLimits`` counts open WebSockets per process and per client
address, so a handshake beyond either bound is refused before it costs a
member, a presence notice or a history read. ``RateLimits`` keeps one token
bucket per key (a user, a client address) across all of that key's
connections: reconnecting does not buy a fresh burst.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable

from config.settings import Settings
from handlers.joins import ReplayBudgets
from handlers.rate_limit import TokenBucket


class ConnectionLimits:
    """Open WebSocket slots: ``admit`` one before the handshake, ``release`` it when the socket ends."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self._total = 0
        self._per_client: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self._total

    def admit(self, client: str) -> int | None:
        """Take a slot for ``client``; or the HTTP status that refuses it (503 full, 429 this client's share)."""
        if self._total >= self.max_connections:
            return 503
        if self._per_client[client] >= self.max_per_client:
            return 429
        self._total += 1
        self._per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self._total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]


class RateLimits:
    """One token bucket per key, shared by the key's connections; idle full buckets are forgotten.

    A bucket left alone for ``burst / rate`` seconds is full again, exactly as
    a new one would be, so dropping it loses nothing and keeps the map as
    small as the set of recently active keys.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._refill = burst / rate if rate > 0 else 0.0
        self._buckets: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty. A rate of 0 never limits."""
        if self._rate <= 0:
            return True
        now = self._clock()
        self._forget_idle(now)
        entry = self._buckets.pop(key, None)
        bucket = entry[0] if entry is not None else TokenBucket(self._rate, self._burst, self._clock)
        self._buckets[key] = (bucket, now)  # most recently used last
        return bucket.take()

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            _, (_, used) = next(iter(self._buckets.items()))
            if now - used < self._refill:
                return
            self._buckets.popitem(last=False)


class JoinLimits:
    """The per-client budgets of joins (handlers/joins.py): handshakes, new rooms, replayed bytes."""

    def __init__(self, settings: Settings) -> None:
        self.handshakes = RateLimits(settings.join_rate, settings.join_burst)
        per_minute = settings.room_create_rate
        self.new_rooms = RateLimits(per_minute / 60.0, max(1, round(per_minute)))
        self.creates_limited = per_minute > 0
        self.replay = ReplayBudgets(settings.replay_rate, settings.replay_burst)


@dataclass(frozen=True)
class SocketLimits:
    """The limits shared by every socket of the process: open slots, and rates per user and per address."""

    connections: ConnectionLimits
    per_user: RateLimits
    per_client: RateLimits
    joins: JoinLimits

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int | None = None) -> "SocketLimits":
        return cls(
            ConnectionLimits(max_connections or settings.max_connections, settings.max_connections_per_client),
            RateLimits(settings.rate_limit, settings.rate_burst),
            # --rate-limit 0 turns message limits off altogether, the per-address one included.
            RateLimits(settings.client_rate_limit if settings.rate_limit > 0 else 0, settings.client_rate_burst),
            JoinLimits(settings),
        )
