"""Storing a message and reading a room's history: one script each, on the room's shard.

Publish is ``publish.lua`` (check the resend key, then the user's message
budget in the room shared by every process, ``XADD``, record the epoch, trim
by count and by size (``trim.lua``), set the room TTL, ring the room's
doorbell with the entry), on the shard's publish wire: the publishes of one
loop turn, from every connection, leave in one write. With ``wait_replicas``,
one ``WAIT`` follows them on the same connection and covers them all: a
message counts as stored only once that many replicas hold it, so a failover
cannot lose a message whose sender got an ``ack``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from redis.exceptions import ResponseError

from bus.backend import BusUnavailable, RateLimited
from bus.changes import fold
from bus.message import Draft, History, IdKey, Message, Published, completeness, id_key
from bus.redis.client import Redis, Shard
from bus.redis.groups import decode_flat
from bus.redis.health import MEMORY
from bus.redis.keys import Keys
from bus.redis.options import RedisOptions
from bus.redis.scripts import Scripts
from bus.redis.shard import noscript
from bus.redis.wire import Wire

OVER_RATE = 2  # publish.lua's answer when the user's shared budget in the room is spent


class RoomWriter:
    """What the scripts that add to a room's stream need: Redis, the keys, the scripts and the room's bounds."""

    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts, options: RedisOptions) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._retention = options.retention
        self._history_bytes = options.history_bytes
        self._ttl_ms = int(options.room_ttl * 1000)


class Publisher(RoomWriter):
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts, options: RedisOptions) -> None:
        super().__init__(redis, keys, scripts, options)
        self._resend_ms = int(options.resend_window * 1000)
        self._replicas = options.wait_replicas
        self._wait_ms = options.wait_timeout_ms
        self._rate = [options.rate_limit if options.rate_burst > 0 else 0, options.rate_burst]
        self._waits: dict[Wire, asyncio.Future[Any]] = {}

    async def publish(self, draft: Draft) -> Published:
        k, room = self._keys, draft.room
        keys = [k.stream(room), k.born(room), k.trimmed(room), k.channel(room)]
        args: list[Any] = [self._retention, self._ttl_ms, draft.user, draft.text]
        if draft.client_id is not None and self._resend_ms > 0:
            keys.append(k.resend(room, draft.user, draft.client_id))
            args += [draft.client_id, self._resend_ms]

        idempotent = len(keys) == 5  # a resend key: had it run, running it again stores nothing
        keys.append(k.size(room))
        args.append(self._history_bytes)
        # Always last: the script takes it off first. Off, the stream's key stands in (never read).
        rate = self._rate if draft.charged else [0, self._rate[1]]
        keys.append(k.rate(room, draft.user) if rate[0] else keys[0])
        args += rate

        store = functools.partial(self._store, keys, args)
        reply = await self._redis.call_shard(keys[0], store, "publish", idempotent=idempotent)
        if reply[1] == OVER_RATE:
            raise RateLimited(room)
        message_id, duplicate = str(reply[0]), bool(reply[1])
        if not duplicate:
            return Published(draft.stored_as(message_id))
        # The original may have been trimmed away since; its id is what the sender needs.
        original = decode_flat(room, [message_id, reply[2]]) if len(reply) > 2 and reply[2] else None
        if not isinstance(original, Message):
            original = draft.stored_as(message_id)
        return Published(original, duplicate=True)

    async def _store(self, keys: list[str], args: list[Any], shard: Shard) -> Any:
        wire = shard.live_wire("publish") or await shard.wire("publish", slack=self._wait_ms / 1000)
        script = self._scripts.publish
        stored = wire.send("EVALSHA", script.sha, len(keys), *keys, *args)
        replicated = self._replicated(wire) if self._replicas else None
        try:
            reply = await stored
        except ResponseError as exc:
            if not noscript(exc):
                raise
            await wire.execute("SCRIPT", "LOAD", script.script)  # it did not run: sending it again is safe
            return await self._store(keys, args, shard)
        self._redis.health.ok(MEMORY + shard.address)  # a write went through: the shard has room (cheap when so)
        if replicated is not None:
            replicas = await replicated
            if int(replicas) < self._replicas:
                raise BusUnavailable(f"stored on {replicas} of {self._replicas} replicas within {self._wait_ms} ms")
        return reply

    def _replicated(self, wire: Wire) -> asyncio.Future[Any]:
        """One ``WAIT`` per wire and loop turn, sent after every publish of that turn: it covers them all."""
        waiting = self._waits.get(wire)
        if waiting is None:
            waiting = self._waits[wire] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._send_wait, wire, waiting)
        return waiting

    def _send_wait(self, wire: Wire, waiting: asyncio.Future[Any]) -> None:
        del self._waits[wire]
        answer = wire.send("WAIT", self._replicas, self._wait_ms)
        answer.add_done_callback(lambda done: _settle(waiting, done))

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        k = self._keys
        keys = [k.stream(room), k.born(room), k.trimmed(room)]
        args: list[Any] = [str(since) if since is not None else "", limit]

        reply = await self._redis.script(keys[0], self._scripts.history, keys, args, "history")
        born, deleted, trimmed, length, last_id, entries = reply
        messages = [m for m in (decode_flat(room, entry) for entry in entries) if m is not None]
        if since is None:
            messages.reverse()  # XREVRANGE gave the newest first
        complete = completeness(
            since,
            born=id_key(born) if born else None,
            max_deleted=max(id_key(deleted), id_key(trimmed or "0-0")),
            retained=int(length),
            replayed=len(messages),
        )
        return History(fold(messages, since), last_id or None, complete)


def _settle(waiting: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if waiting.done():
        return
    if done.exception() is not None:
        waiting.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        waiting.set_result(done.result())
