"""Every ``--metrics-interval`` seconds: reader lag from Redis and the busiest rooms, for ``/metrics``.

The per-message path only counts messages per room in a dict (telemetry/metrics.py);
everything else is done here, off that path, and a scrape reads the result.
A sample that fails leaves the previous figures in place until the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from typing import Awaitable, Callable

import structlog

from bus.backend import BusUnavailable
from bus.redis.lag import LagReport
from bus.room_bus import RoomBus
from telemetry.metrics import Metrics
from telemetry.operator_metrics import TopRoom

log = structlog.get_logger("chat.metrics")


def top_rooms(messages: dict[str, int], members: dict[str, int], seconds: float, n: int) -> list[TopRoom]:
    """The ``n`` busiest rooms: most messages over the interval first, then most members, then by name."""
    rooms = set(messages) | set(members)
    ranked = heapq.nsmallest(n, rooms, key=lambda room: (-messages.get(room, 0), -members.get(room, 0), room))
    per = max(seconds, 1e-9)
    return [TopRoom(room, members.get(room, 0), messages.get(room, 0) / per) for room in ranked]


class MetricsSampler:
    def __init__(self, metrics: Metrics, bus: RoomBus, interval: float) -> None:
        self._metrics = metrics
        self._bus = bus
        self._interval = interval
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        backend = bus.backend
        self._lag: Callable[[], Awaitable[LagReport]] | None = getattr(backend, "lag", None)
        metrics.count_rooms_with(bus.room_count)
        view = metrics.view
        view.members = lambda: bus.busiest(bus.room_count())
        view.ready = lambda: bus.unavailable_reason() is None
        view.failing_shards = getattr(backend, "failing_shards", view.failing_shards)

    def start(self) -> None:
        # Always running (the interval is positive): it also empties the per-room counts, which would
        # otherwise gain a key for every room ever fanned out.
        self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a metrics bug must not end the loop
                log.exception("metrics.sample_failed")
            await asyncio.sleep(self._interval)  # the sampling period itself

    async def sample(self) -> None:
        """One sample now: the top rooms over the time since the last one, then the lag."""
        now = time.monotonic()
        messages = self._metrics.hot.take_room_messages()
        members = dict(self._bus.busiest(self._bus.room_count()))
        view = self._metrics.view
        view.top = top_rooms(messages, members, now - self._last, view.top_rooms)
        self._last = now
        if self._lag is not None:
            with contextlib.suppress(BusUnavailable):
                view.lag = await self._lag()
