"""Bans, mutes and disconnects on Redis: one sorted set of sanctions, one stream of events.

Writes go through ``moderation.lua`` (the sanction and its event in one
step). Every process reads the event stream with a blocking XREAD on a
connection of its own and applies each event to its mirror (bus/moderation.py)
or, for a disconnect, calls ``on_disconnect``: a change reaches every process
within a round trip. After a failure the reader loads the whole set again and
carries on from the stream's end, so a process that missed events (a Redis
outage) still ends up with what is in force; disconnects sent meanwhile are
lost with the connections they were for (a banned user's rejoin is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import structlog

from bus.backend import BusUnavailable
from bus.moderation import OnDisconnect, Sanction, Sanctions, now_ms
from bus.redis.client import REDIS_ERRORS, Redis, Runner, describe
from bus.redis.keys import Keys

log = structlog.get_logger("chat.bus")

_SCRIPT = (Path(__file__).resolve().parent / "scripts" / "moderation.lua").read_text()
FIRST_LOAD_WAIT = 3.0  # seconds start() waits for the sanctions in force before serving anyway
READ_COUNT = 100


def _member(kind: str, room: str | None, user: str) -> str:
    return json.dumps([kind, room or "", user], ensure_ascii=False, separators=(",", ":"))


def _sanction(member: str, score: Any) -> Sanction:
    kind, room, user = json.loads(member)
    until = None if str(score) in ("inf", "+inf") or float(score) == float("inf") else int(float(score))
    return Sanction(kind, room or None, user, until)


class RedisModeration:
    def __init__(self, redis: Redis, keys: Keys, timeout: float | None) -> None:
        self._redis = redis
        self._keys = keys
        self._sanctions = Sanctions()
        self._script = redis.topology.shard(redis.topology.address_for(keys.sanctions)).client.register_script(_SCRIPT)
        # A blocking read must return before the connection's own timeout would call it a failure.
        self._block_ms = 1000 if timeout is None else max(10, int(timeout * 500))
        self._on_disconnect: OnDisconnect | None = None
        self._loaded = asyncio.Event()
        self._runner = Runner("moderation", self._failed)
        self._failing = False  # logged once per outage, not at every retry
        self._task: asyncio.Task[None] | None = None

    async def start(self, on_disconnect: OnDisconnect) -> None:
        self._on_disconnect = on_disconnect
        self._task = asyncio.create_task(self._runner.run_forever(self._hear), name="moderation-reader")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), FIRST_LOAD_WAIT)

    async def close(self) -> None:
        self._runner.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._on_disconnect = None

    # ---- checks and listings: the mirror -------------------------------------------

    def banned(self, room: str, user: str) -> bool:
        return self._sanctions.banned(room, user)

    def muted(self, room: str, user: str) -> bool:
        return self._sanctions.muted(room, user)

    def listing(self, kind: str, room: str | None) -> list[Sanction]:
        return self._sanctions.listing(kind, room)

    # ---- writes ----------------------------------------------------------------------

    async def impose(self, sanction: Sanction) -> None:
        until = "inf" if sanction.until is None else str(sanction.until)
        await self._write("set", _member(sanction.kind, sanction.room, sanction.user), until)
        self._sanctions.put(sanction)

    async def lift(self, kind: str, room: str | None, user: str) -> bool:
        changed = await self._write("lift", _member(kind, room, user), "inf")
        self._sanctions.drop(kind, room, user)
        return bool(changed)

    async def disconnect(self, user: str, room: str | None) -> None:
        await self._write("disconnect", json.dumps([user, room or ""], ensure_ascii=False), "inf")

    async def _write(self, op: str, member: str, until: str) -> Any:
        keys = [self._keys.sanctions, self._keys.moderation_events]
        return await self._redis.script(keys[0], self._script, keys, [op, member, until, now_ms()], "moderation write")

    # ---- hearing every process's writes --------------------------------------------------

    async def _hear(self) -> None:
        """Load what is in force, then apply each event as it comes, until a failure (the runner starts again)."""
        client = self._redis.topology.shard_for(self._keys.sanctions).client
        events = self._keys.moderation_events
        newest: Any = await client.xrevrange(events, count=1)
        last: str = newest[0][0] if newest else "0-0"
        found: Any = await client.zrangebyscore(self._keys.sanctions, now_ms(), "+inf", withscores=True)
        self._sanctions.replace_all(_sanction(member, score) for member, score in found)
        self._loaded.set()
        self._runner.healthy()
        if self._failing:
            self._failing = False
            log.info("moderation.recovered")
        while not self._runner.closed:
            reply: Any = await client.xread({events: last}, count=READ_COUNT, block=self._block_ms)
            for _, entries in _streams(reply):
                for entry_id, fields in entries:
                    last = entry_id
                    self._apply(fields)

    def _apply(self, fields: dict[str, str]) -> None:
        try:
            if fields["op"] == "disconnect":
                user, room = json.loads(fields["m"])
                if self._on_disconnect is not None:
                    self._on_disconnect(user, room or None)
                return
            sanction = _sanction(fields["m"], fields["u"])
        except (KeyError, ValueError, TypeError):
            log.warning("moderation.bad_event", fields=sorted(fields))
            return
        if fields["op"] == "set":
            self._sanctions.put(sanction)
        else:
            self._sanctions.drop(sanction.kind, sanction.room, sanction.user)

    async def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning("moderation.read_failed", reason=describe(exc))
        with contextlib.suppress(*REDIS_ERRORS, BusUnavailable):
            await self._redis.topology.refresh()


def _streams(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """XREAD's answer as (stream, entries), whether redis-py gives a list (RESP2) or a dict (RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [
            (name, entries[0] if entries and isinstance(entries[0], list) else entries)
            for name, entries in reply.items()
        ]
    return [(name, entries) for name, entries in reply]
