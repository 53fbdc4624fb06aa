"""The processes' status records in Redis, and the cluster's state read back (``server.py status``, the admin page).

Each process writes a small JSON record under ``Keys.status(<incarnation>)``
every few seconds (what it holds is the server's business: telemetry/status.py),
kept for a minute. A reader lists the processes from the heartbeat set
(``Keys.alive``) and tells how old each record is from its remaining TTL
(Redis's clock alone, whatever the processes' clocks say): one not
rewritten for a few intervals is *silent* (stopped, hung, cut off), and still
shows where it was, until the janitor buries its process.

A process's lag is read from Redis, never from its own record, so it is
right when the process is stopped: its consumer group on each room's stream
is where it last marked or read it (``groups.mark_groups``); the entries
after that point are behind once the oldest of them is older than a grace of
two of its intervals and a second (time enough to have marked past it), and
its age is the lag in seconds (scripts/status_lag.lua). A room idle for long
that gets more messages than its retention within one interval shows a
moment's lag that is not there: the trimmed entries' ages are not known.
Only the first ``LAG_ROOMS`` rooms of a process (by name) are looked at, and
at most ``BEHIND_CAP`` entries a room are counted: a read stays small
however big the deployment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bus.redis.client import Redis
from bus.redis.keys import Keys

LAG_ROOMS = 200
BEHIND_CAP = 100
SILENT_INTERVALS = 3  # a record not rewritten for this many intervals (and a second) says its process is silent
KEEP_SECONDS = 60.0  # a record is kept this long after its last write (at least 10 intervals): who went silent, where
DEFAULT_INTERVAL = 2.0  # seconds, for a process whose record is gone
_LAG_SCRIPT = (Path(__file__).resolve().parent / "scripts" / "status_lag.lua").read_text()


@dataclass
class ProcessLag:
    """How far a process is behind in the rooms looked at."""

    rooms_held: int = 0
    rooms_checked: int = 0
    behind: int = 0  # entries not delivered past the grace, over the rooms checked (each capped)
    seconds: float = 0.0  # age of the oldest of them
    pending: int = 0  # entries read and not acknowledged (the bus reads with NOACK: 0 unless something is wrong)
    missing_groups: int = 0  # rooms listed for the process without its group (being cleaned up, or lost)


@dataclass
class ProcessView:
    incarnation: str
    heartbeat_age: float  # seconds since its last heartbeat (Redis clock)
    record: dict[str, Any] | None  # None: its record expired (stopped, or gone, long ago)
    record_age: float | None = None  # seconds since the record was written (from its TTL: Redis's clock alone)
    lag: ProcessLag = field(default_factory=ProcessLag)

    @property
    def silent(self) -> bool:
        """No record, or one its process has not rewritten for a few intervals."""
        if self.record is None or self.record_age is None:
            return True
        return self.record_age > SILENT_INTERVALS * float(self.record.get("interval", DEFAULT_INTERVAL)) + 1


@dataclass
class RoomView:
    room: str
    connections: int  # over the processes whose records list it among their busiest
    users: int  # over every process (the room's presence totals)
    last_message_age: float | None  # seconds; None: no message retained


def id_ms(message_id: str) -> int:
    return int(message_id.partition("-")[0])


def keep_ms(interval: float) -> int:
    return int(max(KEEP_SECONDS, 10 * interval) * 1000)


async def write_record(redis: Redis, keys: Keys, incarnation: str, record: dict[str, Any], interval: float) -> None:
    """The record, kept ``keep_ms``: its remaining TTL then says how long ago it was written."""
    key, ttl_ms = keys.status(incarnation), keep_ms(interval)
    await redis.command(key, "SET", key, orjson.dumps({**record, "keep_ms": ttl_ms}), "PX", ttl_ms, what="status")


class ClusterReader:
    """Reads what every process of one deployment (one Redis prefix) reported, and their lag, from Redis."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        topology = redis.topology
        self._script = topology.shard(topology.address_for(keys.alive)).client.register_script(_LAG_SCRIPT)

    async def now_ms(self) -> int:
        seconds, micros = await self._redis.command(self._keys.alive, "TIME", what="status")
        return int(seconds) * 1000 + int(micros) // 1000

    async def processes(self) -> list[ProcessView]:
        """Every process in the heartbeat set, by node id, with its record (if still there) and lag."""
        alive = self._keys.alive
        flat = await self._redis.command(alive, "ZRANGE", alive, "0", "-1", "WITHSCORES", what="status")
        now = await self.now_ms()
        beats = {str(name): float(score) for name, score in zip(flat[0::2], flat[1::2])}
        names = sorted(beats)
        raws = await self._redis.command(alive, "MGET", *map(self._keys.status, names), what="status") if names else []
        ttls = await asyncio.gather(
            *(self._redis.command(alive, "PTTL", self._keys.status(n), what="status") for n in names)
        )
        views = []
        for name, raw, ttl in zip(names, raws, ttls):
            record = orjson.loads(raw) if raw else None
            age = (int(record["keep_ms"]) - int(ttl)) / 1000 if record and int(ttl) >= 0 else None
            views.append(ProcessView(name, max(0.0, (now - beats[name]) / 1000), record, age))
        lags = await asyncio.gather(*(self._lag(view) for view in views))
        for view, lag in zip(views, lags):
            view.lag = lag
        return views

    async def _lag(self, view: ProcessView) -> ProcessLag:
        listing = self._keys.rooms_of(view.incarnation)
        rooms = sorted(await self._redis.command(listing, "SMEMBERS", listing, what="status"))
        checked = rooms[:LAG_ROOMS]
        interval = float((view.record or {}).get("interval", DEFAULT_INTERVAL))
        grace_ms = int((2 * interval + 1) * 1000)
        replies = await asyncio.gather(*(self._room_lag(room, view.incarnation, grace_ms) for room in checked))
        lag = ProcessLag(rooms_held=len(rooms), rooms_checked=len(checked))
        for reply in replies:
            if not reply[0]:
                lag.missing_groups += 1
                continue
            _, pending, behind, oldest, now = reply
            lag.pending += int(pending)
            lag.behind += int(behind)
            if int(behind):
                lag.seconds = max(lag.seconds, (int(now) - int(oldest)) / 1000)
        return lag

    async def _room_lag(self, room: str, group: str, grace_ms: int) -> list[Any]:
        stream, trimmed = self._keys.stream(room), self._keys.trimmed(room)
        reply = await self._redis.script(
            stream, self._script, [stream, trimmed], [group, grace_ms, BEHIND_CAP], "status"
        )
        return list(reply)

    async def rooms(self, views: list[ProcessView], top: int) -> list[RoomView]:
        """The ``top`` rooms with the most connections, from the records' lists of their busiest rooms."""
        connections: dict[str, int] = {}
        for view in views:
            for room, count in (view.record or {}).get("top", []):
                connections[str(room)] = connections.get(str(room), 0) + int(count)
        busiest = sorted(connections.items(), key=lambda item: (-item[1], item[0]))[:top]
        now = await self.now_ms()
        return list(await asyncio.gather(*(self._room(room, count, now) for room, count in busiest)))

    async def _room(self, room: str, connections: int, now: int) -> RoomView:
        totals, stream = self._keys.users(room), self._keys.stream(room)
        counts = await self._redis.command(totals, "HVALS", totals, what="status")
        last = await self._redis.command(stream, "XREVRANGE", stream, "+", "-", "COUNT", "1", what="status")
        age = (now - id_ms(str(last[0][0]))) / 1000 if last else None
        return RoomView(room, connections, sum(1 for count in counts if int(count) > 0), age)
