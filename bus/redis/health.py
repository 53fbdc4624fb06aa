"""The Redis bus's one outage tracker.

Each part that can fail (a shard, by its address; presence) is failing or
not. ``bus.error`` is logged when the first shard fails and ``bus.recovered``
when the last one is back (one pair per outage, however many shards); presence
has its own pair of events and never makes the bus unready: a presence
failure must not hold up a message.
"""

from __future__ import annotations

import time
from typing import Callable

import structlog

log = structlog.get_logger("chat.bus")

PRESENCE = "presence"


class Health:
    """Up, or down with a reason per failing part (shard addresses, and ``presence``)."""

    def __init__(self, on_recovered: Callable[[], None] | None = None) -> None:
        self.recoveries = 0
        self._failing: dict[str, str] = {"start": "not connected to redis yet"}
        self._on_recovered = on_recovered  # e.g. the chat_bus_reconnects_total counter
        self._outage_started: float | None = None

    @property
    def reason(self) -> str | None:
        """Why the bus cannot publish (for /readyz), or None."""
        failures = (why for part, why in self._failing.items() if part not in (PRESENCE, "start"))
        return next(failures, self._failing.get("start"))  # a failure says more than "not yet"

    def failed(self, part: str, reason: str) -> None:
        if part == PRESENCE:
            if PRESENCE not in self._failing:
                log.warning("presence.error", reason=reason)
        elif self._outage_started is None:
            self._outage_started = time.monotonic()
            log.error("bus.error", reason=reason)
        self._failing[part] = reason

    def ok(self, part: str) -> None:
        if not self._failing:
            return  # the common case, on every call: nothing to do
        removed = self._failing.pop(part, None) is not None
        if part == PRESENCE:
            if removed:
                log.info("presence.recovered")
            return
        removed |= self._failing.pop("start", None) is not None  # the first thing that worked: connected
        if not removed or self.reason is not None:
            return
        if self._outage_started is None:
            log.info("bus.connected")
            return
        log.info("bus.recovered", duration_ms=round((time.monotonic() - self._outage_started) * 1000))
        self._outage_started = None
        self.recoveries += 1
        if self._on_recovered is not None:
            self._on_recovered()

    def failing_parts(self) -> list[str]:
        return [part for part in self._failing if part not in ("start", PRESENCE)]

    def forget(self, parts: set[str]) -> None:
        """Shards that are no longer masters (failed over) cannot recover: stop waiting for them."""
        for part in [p for p in self._failing if p in parts]:
            self.ok(part)
