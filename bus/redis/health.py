"""The Redis bus's one outage tracker.

Each part that can fail (a shard, by its address; presence; a shard's memory)
is failing or not. ``bus.error`` is logged when the first shard fails and
``bus.recovered`` when the last one is back (one pair per outage, however many
shards); presence has its own pair of events and never makes the bus unready:
a presence failure must not hold up a message.

A shard that refuses writes for lack of memory (``OOM``: ``maxmemory`` with
``noeviction``, config/redis.conf) answers reads still, so its part is apart
(``memory:<address>``): it makes the bus unready until a write works there
again or the shard says it has room (``has_room``, asked by the liveness loop).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import structlog

log = structlog.get_logger("chat.bus")

PRESENCE = "presence"
MEMORY = "memory:"  # + a shard's address: the shard refuses writes for lack of memory


def out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write because ``used_memory`` is over ``maxmemory`` (the command did not run)."""
    return str(exc).startswith("OOM ")


def has_room(info: dict[str, Any]) -> bool:
    """``INFO memory`` of a shard that would take a write again: Redis's own test (evict.c)."""
    limit = int(info.get("maxmemory", 0))
    used = int(info.get("used_memory", 0)) - int(info.get("mem_not_counted_for_evict", 0))
    return limit == 0 or used <= limit


class Health:
    """Up, or down with a reason per failing part (shard addresses, and ``presence``)."""

    def __init__(
        self, on_recovered: Callable[[], None] | None = None, on_out_of_memory: Callable[[], None] | None = None
    ) -> None:
        self.recoveries = 0
        self.out_of_memory_refusals = 0
        self._failing: dict[str, str] = {"start": "not connected to redis yet"}
        self._on_recovered = on_recovered  # e.g. the chat_bus_reconnects_total counter
        self._on_out_of_memory = on_out_of_memory  # e.g. the chat_bus_out_of_memory_total counter
        self._outage_started: float | None = None
        self._connection_lost = False  # this outage had more than shards short of memory (a reconnect)

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
        if not part.startswith((PRESENCE, MEMORY)):
            self._connection_lost = True
        self._failing[part] = reason

    def refused_for_memory(self, address: str, reason: str) -> None:
        """The shard at ``address`` refused a write for lack of memory: counted, and unready until it has room."""
        self.out_of_memory_refusals += 1
        if self._on_out_of_memory is not None:
            self._on_out_of_memory()
        self.failed(MEMORY + address, reason)

    def short_of_memory(self) -> list[str]:
        """The addresses of the shards that refused a write for lack of memory and have not taken one since."""
        return [part[len(MEMORY) :] for part in self._failing if part.startswith(MEMORY)]

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
        if not self._connection_lost:
            return  # only short of memory: nothing was reconnected
        self._connection_lost = False
        self.recoveries += 1
        if self._on_recovered is not None:
            self._on_recovered()

    def failing_parts(self) -> list[str]:
        """The shards that cannot be reached (a memory part is no address to ping)."""
        return [part for part in self._failing if part not in ("start", PRESENCE) and not part.startswith(MEMORY)]

    def forget(self, parts: set[str]) -> None:
        """Shards that are no longer masters (failed over) cannot recover: stop waiting for them."""
        gone = [p for p in self._failing if p in parts or (p.startswith(MEMORY) and p[len(MEMORY) :] in parts)]
        for part in gone:
            self.ok(part)
