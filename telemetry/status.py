"""This process's status record, and the cluster's state as the admin page and ``server.py status`` show it.

Every ``--status-interval`` seconds the reporter builds the record (address,
readiness, rooms, connections, deliveries and their rate, the busiest rooms
here) and, on the Redis bus, stores it there (bus/redis/status.py), where
every process's admin page and ``server.py status`` read the whole cluster.
On the in-process bus the one process is the cluster. Nothing here is on a
message's path: the counters it reads are the ones /metrics serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from bus.backend import BusUnavailable
from bus.redis import RedisBroker
from bus.redis.status import ProcessLag, ProcessView, RoomView
from bus.room_bus import RoomBus

log = structlog.get_logger("chat.status")

TOP_ROOMS = 10  # rooms each record lists, and the cluster view shows


@dataclass
class ProcessFacts:
    """Where a record's numbers come from: the server's parts."""

    node: str
    address: str
    api: str | None
    bus: RoomBus
    connections: Callable[[], int]
    delivered: Callable[[], int]


class StatusReporter:
    def __init__(self, facts: ProcessFacts, interval: float) -> None:
        self.facts = facts
        self.interval = interval
        self.started_at = int(time.time() * 1000)
        self._last = (facts.delivered(), time.monotonic())
        self._rate = 0.0
        self._task: asyncio.Task[None] | None = None
        self._reader: Any = None

    @property
    def broker(self) -> RedisBroker | None:
        backend = self.facts.bus.backend
        return backend if isinstance(backend, RedisBroker) else None

    def _measure(self) -> None:
        """Deliveries per second since the last tick."""
        delivered, now = self.facts.delivered(), time.monotonic()
        before, then = self._last
        if now > then:
            self._rate = max(0, delivered - before) / (now - then)
        self._last = (delivered, now)

    def record(self) -> dict[str, Any]:
        facts, reason = self.facts, self.facts.bus.unavailable_reason()
        return {
            "node": facts.node,
            "pid": os.getpid(),
            "address": facts.address,
            "api": facts.api,
            "ready": reason is None,
            "reason": reason,
            "rooms": facts.bus.room_count(),
            "connections": facts.connections(),
            "delivered": facts.delivered(),
            "delivered_per_second": round(self._rate, 2),
            "started_at": self.started_at,
            "at": int(time.time() * 1000),
            "interval": self.interval,
            "top": facts.bus.busiest(TOP_ROOMS),
        }

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-reporter")

    async def stop(self) -> None:
        """End the ticks; on Redis, a last record says the process stopped (not silent) until it is buried."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        broker = self.broker
        if broker is not None and self._task is not None:
            with contextlib.suppress(BusUnavailable):
                await broker.write_status({**self.record(), "ready": False, "reason": "stopped", "stopped": True}, 1.0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._measure()
            broker = self.broker
            if broker is None:
                continue
            try:
                await broker.write_status(self.record(), self.interval)
            except BusUnavailable as exc:  # the bus says so itself; the record comes back with Redis
                log.debug("status.write_failed", reason=str(exc))
            except Exception:  # a bug must not end the records for good: the process would look silent
                log.exception("status.failed")

    async def cluster(self, top: int = TOP_ROOMS) -> dict[str, Any]:
        """What ``/api/cluster`` answers: every process with its lag, and the busiest rooms."""
        broker = self.broker
        if broker is None:
            return await self._alone(top)
        if self._reader is None:
            self._reader = broker.cluster_reader()
        views = await self._reader.processes()
        rooms = await self._reader.rooms(views, top)
        return cluster_json("redis", views, rooms)

    async def _alone(self, top: int) -> dict[str, Any]:
        """The in-process bus: this process is the cluster; its deliveries are in-process, never behind."""
        bus = self.facts.bus
        view = ProcessView(f"{self.facts.node}/local", 0.0, self.record(), 0.0, ProcessLag(rooms_held=bus.room_count()))
        rooms = []
        for room, connections in bus.busiest(top):
            users = len(await bus.members(room))
            history = await bus.history(room, None, 1)
            last = history.last_id
            age = max(0.0, time.time() - int(last.partition("-")[0]) / 1000) if last else None
            rooms.append(RoomView(room, connections, users, age))
        return cluster_json("memory", [view], rooms)


def state_of(view: ProcessView) -> str:
    """ready, not ready (it says why), stopped (it said so) or silent (no record lately: hung, or cut off)."""
    if view.record is not None and view.record.get("stopped"):
        return "stopped"
    if view.silent or view.record is None:
        return "silent"
    return "ready" if view.record.get("ready") else "not ready"


def process_json(view: ProcessView) -> dict[str, Any]:
    """A process as the page shows it; a silent one's rate is unknown (its last record's would mislead)."""
    record, lag, state = view.record or {}, view.lag, state_of(view)
    return {
        "node": record.get("node") or view.incarnation.rpartition("/")[0],
        "incarnation": view.incarnation,
        "state": state,
        "reason": record.get("reason"),
        "address": record.get("address"),
        "api": record.get("api"),
        "rooms": record.get("rooms"),
        "connections": record.get("connections"),
        "delivered": record.get("delivered"),
        "delivered_per_second": record.get("delivered_per_second") if state in ("ready", "not ready") else None,
        "started_at": record.get("started_at"),
        "heartbeat_age": round(view.heartbeat_age, 3),
        "record_age": None if view.record_age is None else round(view.record_age, 3),
        "lag": {
            "behind": lag.behind,
            "seconds": round(lag.seconds, 3),
            "pending": lag.pending,
            "rooms_checked": lag.rooms_checked,
            "rooms_held": lag.rooms_held,
        },
    }


def cluster_json(bus: str, views: list[ProcessView], rooms: list[RoomView]) -> dict[str, Any]:
    processes = [process_json(view) for view in views]
    return {
        "bus": bus,
        "at": int(time.time() * 1000),
        "processes": processes,
        "rooms": [
            {
                "room": room.room,
                "users": room.users,
                "connections": room.connections,
                "last_message_age": None if room.last_message_age is None else round(room.last_message_age, 1),
            }
            for room in rooms
        ],
        "totals": {
            "delivered_per_second": round(sum(p["delivered_per_second"] or 0 for p in processes), 2),
            "lag_seconds": max((p["lag"]["seconds"] for p in processes), default=0.0),
            "connections": sum(p["connections"] or 0 for p in processes if p["state"] in ("ready", "not ready")),
            "ready": sum(1 for p in processes if p["state"] == "ready"),
        },
    }
