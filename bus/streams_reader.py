"""The consuming half of the Redis Streams backend: this node's groups, read, delivered, acked.

One ``GroupReader`` per node reads this node's consumer group (named after the
node id) on the stream of every subscribed room with a single
``XREADGROUP GROUP <node> <node> COUNT .. BLOCK .. STREAMS k1 k2 .. > > ..``,
decodes each entry once, hands the whole batch to ``deliver`` and then
``XACK``s it (one XACK per room per batch, pipelined). Acknowledging after
delivery means entries a node read but never delivered stay pending: rooms
whose group may hold such entries (the group outlived an earlier run of this
node, or the connection broke mid-read) are first re-read from id 0 (this
consumer's pending list), then from ``>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, cast

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from bus import streams_scripts as lua
from bus.backend import Deliver
from bus.message import IdKey, Message, id_key

log = structlog.get_logger("chat.bus")

BLOCK_MS = 2000  # longest XREADGROUP wait; also how soon a healthy reader notices a failure seen elsewhere
READ_COUNT = 256  # entries per room per read
WAKE_ATTEMPTS = 50
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
_ZERO = IdKey(0, 0)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _lost_group(exc: ResponseError) -> bool:
    """A read failed because a group or stream vanished (Redis restarted empty, a janitor, DEL)."""
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


class Health:
    """Up or down, with a reason; logs one bus.error per outage and bus.recovered after it."""

    def __init__(self, on_recovered: Callable[[], None] | None = None) -> None:
        self.reason: str | None = "not connected to redis yet"
        self.recoveries = 0
        self._on_recovered = on_recovered  # e.g. the chat_bus_reconnects_total counter
        self._outage_started: float | None = None

    def failed(self, reason: str) -> None:
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            log.error("bus.error", reason=reason)
        self.reason = reason

    def ok(self) -> None:
        if self._outage_started is not None:
            down_ms = round((time.monotonic() - self._outage_started) * 1000)
            log.info("bus.recovered", duration_ms=down_ms)
            self.recoveries += 1
            if self._on_recovered is not None:
                self._on_recovered()
        elif self.reason is not None:
            log.info("bus.connected")
        self._outage_started = None
        self.reason = None


@dataclass(eq=False)
class RoomGroup:
    """This node's view of its group on one room's stream."""

    name: str
    key: str
    born: str | None = None  # the room's epoch as this node knows it
    cursor: str = ""  # the group's last-delivered id ('' until the group exists)
    delivered: IdKey = _ZERO  # newest id handed to deliver in this run; re-reads are dropped
    pending: bool = False  # re-read this consumer's pending entries before new ones

    def grouped(self, status: str, last_delivered: str, born: str | None) -> None:
        """Take in what ENSURE_GROUP found or did."""
        if not self.cursor:  # first subscription in this run
            self.born, self.cursor = born, last_delivered
            # A group made just now holds nothing older for us; one that
            # survived from an earlier run of this node has pending entries
            # and entries after its position that this run has not delivered.
            self.delivered = id_key(last_delivered) if status == "created" else _ZERO
            self.pending = status == "exists"
        elif status == "reset":  # a new epoch: every entry in the stream is new here
            self.born, self.cursor, self.delivered = born, "0-0", _ZERO
            self.pending = True
        else:
            self.pending = True

    def advance(self, message_id: str) -> None:
        if id_key(message_id) > id_key(self.cursor or "0-0"):
            self.cursor = message_id


class GroupReader:
    """Reads this node's groups; ``run`` keeps it going across Redis outages."""

    def __init__(
        self, *, redis: Redis, reader: Redis, node: str, timeout: float | None,
        ensure_group: AsyncScript, health: Health,
        connected: Callable[[], Awaitable[None]], drop_later: Callable[[str], None],
    ) -> None:
        self.rooms: dict[str, RoomGroup] = {}
        self.settled = asyncio.Event()  # the first connection attempt is over
        self.closed = False
        self._by_key: dict[str, RoomGroup] = {}
        self._redis = redis  # commands (XACK, CLIENT UNBLOCK, group scripts)
        self._conn = reader  # one connection, for the blocking reads only
        self._node = node
        self._timeout = timeout
        self._ensure_group = ensure_group
        self._health = health
        self._connected = connected  # re-registers the node
        self._drop_later = drop_later
        self._deliver: Deliver | None = None
        self._rooms_changed = asyncio.Event()
        self._reader_id: int | None = None
        self._read_gen = 0
        self._blocked = False
        self._backoff = BACKOFF_MIN

    def add(self, group: RoomGroup) -> None:
        self.rooms[group.name], self._by_key[group.key] = group, group

    def remove(self, room: str) -> RoomGroup | None:
        group = self.rooms.pop(room, None)
        if group is not None:
            self._by_key.pop(group.key, None)
        return group

    async def aclose(self) -> None:
        """Close the reading connection (after the task has stopped)."""
        await self._conn.aclose()

    def start(self, deliver: Deliver) -> asyncio.Task[None]:
        self._deliver = deliver
        return asyncio.create_task(self._run(), name="bus-reader")

    async def _run(self) -> None:
        """Runner: keep consuming; on failure report it and back off."""
        while not self.closed:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                self._health.failed(describe(exc))
                # The reader's connection is the first to see Redis go; the
                # pool's idle ones would each fail one command before learning it.
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
            except Exception as exc:  # a bug must not stop delivery for good
                log.exception("bus.reader_failed")
                self._health.failed(describe(exc))
            self.settled.set()
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _consume(self) -> None:
        self._reader_id = None
        self._reader_id = await asyncio.wait_for(self._conn.client_id(), self._timeout)
        await self.resync()
        while not self.closed:
            if self._health.reason is not None:
                await self.resync()  # a failure seen elsewhere: groups may be gone
            try:
                await self._drain_pending()
                await self._read_new()
            except ResponseError as exc:
                if not _lost_group(exc):
                    raise
                await self.ensure_all()

    async def resync(self) -> None:
        """After (re)connecting or a failure seen elsewhere: node registered, every group there."""
        await self._connected()
        await self.ensure_all()
        self._health.ok()
        self._backoff = BACKOFF_MIN
        self.settled.set()

    async def ensure_all(self) -> None:
        """Re-create whichever of this node's groups vanished; re-read pending entries of all."""
        groups = list(self.rooms.values())
        if not groups:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(lua.node_rooms_key(self._node), *[group.name for group in groups])
            for group in groups:
                await self._ensure_group(
                    keys=[group.key, lua.born_key(group.name)],
                    args=[self._node, group.born or "", group.cursor], client=pipe)
            replies = await asyncio.wait_for(pipe.execute(), self._timeout)
        for group, (status, last_delivered, born) in zip(groups, replies[1:]):
            group.grouped(status, last_delivered, born)
            if group.name not in self.rooms:
                self._drop_later(group.name)  # unsubscribed while we re-created its group

    async def _drain_pending(self) -> None:
        """Re-read this consumer's pending entries (id 0 onwards) of the rooms that may have some."""
        cursors = {group.key: "0" for group in self.rooms.values() if group.pending}
        while cursors:
            reply = await asyncio.wait_for(self._xreadgroup(cursors, block=None), self._timeout)
            returned = {key: entries for key, entries in reply}
            for key in list(cursors):
                entries, group = returned.get(key), self._by_key.get(key)
                if entries and group is not None:
                    cursors[key] = entries[-1][0]
                    continue
                del cursors[key]
                if group is not None:
                    group.pending = False
            await self._handle(reply)

    async def _read_new(self) -> None:
        live = {group.key: ">" for group in self.rooms.values() if not group.pending}
        if not live:
            if not self.rooms:
                self._rooms_changed.clear()
                with contextlib.suppress(TimeoutError):
                    # Bounded, so that a failure seen by the heartbeat gets a resync.
                    await asyncio.wait_for(self._rooms_changed.wait(), BLOCK_MS / 1000)
            return
        self._read_gen += 1
        self._blocked = True  # set with the snapshot, before any await: see wake
        try:
            reply = await self._xreadgroup(live, block=BLOCK_MS)
        finally:
            self._blocked = False
        await self._handle(reply)

    async def _xreadgroup(self, streams: dict[str, str], block: int | None) -> list[Any]:
        """``[[key, [(id, fields), ...]], ...]``: redis-py's RESP2 shape with decoded strings."""
        positions: dict[Any, Any] = dict(streams)
        reply = await self._conn.xreadgroup(self._node, self._node, positions, count=READ_COUNT, block=block)
        return cast(list[Any], reply)

    async def wake(self) -> None:
        """Make the reader re-issue its read with the current rooms, now.

        The blocking read has a connection of its own, so a room added while
        it blocks can end it at once with CLIENT UNBLOCK (a clean "timed out"
        reply; the connection stays usable) instead of waiting out the block
        or cancelling the read, which would cost the connection. A short
        block plus an event would add that block's latency to every first
        join of a room on this node. CLIENT UNBLOCK answers 0 when the read
        has not reached Redis yet (or its reply is on the way back): retrying
        covers the first case; the reader's flag going down ends the second.
        """
        self._rooms_changed.set()
        generation = self._read_gen
        for _ in range(WAKE_ATTEMPTS):
            if not self._blocked or self._read_gen != generation or self._reader_id is None:
                return
            try:
                if await asyncio.wait_for(self._redis.client_unblock(self._reader_id), self._timeout):
                    return
            except REDIS_ERRORS:
                return  # the read ends by itself within BLOCK_MS

    async def _handle(self, reply: list[Any]) -> None:
        """Decode each entry once, deliver the batch, then acknowledge it."""
        batch: list[Message] = []
        acks: dict[str, list[str]] = {}
        for key, entries in reply:
            group = self._by_key.get(key)
            if group is None or not entries:
                continue
            for message_id, fields in entries:
                message = lua.decode_fields(message_id, group.name, fields)
                if message is None or message.key <= group.delivered:
                    continue  # deleted while pending, or already delivered in this run
                group.delivered = message.key
                if group.born is None:  # the group saw the room's very first entry
                    group.born = message_id
                batch.append(message)
            group.advance(entries[-1][0])
            acks[key] = [message_id for message_id, _ in entries]
        if batch and self._deliver is not None:
            try:
                self._deliver(batch)
            except Exception:  # a fan-out bug must not wedge the stream: log, ack, go on
                log.exception("bus.deliver_failed", messages=len(batch))
        if acks:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, ids in acks.items():
                    pipe.xack(key, self._node, *ids)
                await asyncio.wait_for(pipe.execute(), self._timeout)
