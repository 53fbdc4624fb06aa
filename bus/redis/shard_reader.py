"""The consuming half: this process's consumer group on each subscribed room, and one reader per shard.

Each room with local members has a consumer group named after this
process's incarnation. Each shard (Redis master) has one ``ShardReader``:

- one subscribed connection (a ``Wire``), ``SSUBSCRIBE``d to the shard
  channel of each of its rooms. A publish rings it with the entry itself
  (``publish.lua``), in stream order; join, leave and typing notices too;
- a room that is caught up (``RoomGroup.caught_up``) is delivered straight
  from its doorbells: no read, no acknowledgement. A room that is behind
  (just subscribed, its connection remade, rung while read) is read on the
  read wire: ``XGROUP SETID`` to the last id this process delivered, then
  ``XREADGROUP ... NOACK STREAMS <room> >``, every room behind in one write
  (never a cross-slot command). It is caught up once a read ends with no
  doorbell heard meanwhile. Reads follow the rooms that fell behind, never
  the rooms held; nothing wakes a reader when a room is added.

A doorbell is lost only with its connection; whenever that is (re)made every
room of the shard is behind, subscribed again, read, and sent its whole member
list (``presence``). No pending list grows: the cursor set before each read is
what it would give. Anything seen twice is dropped (``RoomGroup.take``). Now
and then the groups are *marked* (``groups.mark_groups``) so Redis knows how
far this process has delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from hiredis import ReplyError
from redis.exceptions import ResponseError

from bus.backend import BusUnavailable
from bus.message import Entry, Notice
from bus.redis.client import REDIS_ERRORS, Restart, Runner, Shard, describe, redirected
from bus.redis.groups import RoomGroup, decode_flat, decode_notice, decode_rung, lost_group, mark_groups
from bus.redis.reader_context import Members, ReaderContext
from bus.redis.wire import Wire

__all__ = ["Members", "ReaderContext", "ShardReader"]

log = structlog.get_logger("chat.bus")

READ_COUNT = 256  # entries per room per read
IDLE_PING = 5.0  # seconds without traffic before the subscribed connection is checked with a PING


class ShardReader:
    def __init__(self, shard: Shard, ctx: ReaderContext) -> None:
        self.shard = shard
        self.rooms: dict[str, RoomGroup] = {}
        self._ctx = ctx
        self._dirty: set[str] = set()
        self._subscriber: Wire | None = None
        self._connected = asyncio.Event()
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()  # a doorbell, a ring, a restart or a lost connection
        self._lost: BaseException | None = None
        self._restart = self._marking = False
        self._marked: dict[str, str] = {}  # room -> the cursor its group was last marked at (groups.mark_groups)
        self._heard = 0.0
        self._keepalive: asyncio.TimerHandle | None = None
        self.runner = Runner(f"reader {shard.address}", self._failed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"bus-reader-{self.shard.address}"
        self._task = asyncio.create_task(self.runner.run_forever(self._session), name=name)

    async def stop(self) -> None:
        self.runner.closed = True
        self._wake.set()
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.5)

    # ---- what the consumer asks -------------------------------------------------

    async def listen(self, group: RoomGroup) -> None:
        """Hear the room's doorbell from now on; returns once Redis has the subscription."""
        self.rooms[group.name] = group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._ctx.timeout)
        subscriber = self._subscriber
        if subscriber is None:
            raise BusUnavailable(f"redis {self.shard.address} not connected")
        try:
            subscriber.send("SSUBSCRIBE", self._ctx.keys.channel(group.name))
            await self._barrier(subscriber)
        except REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis subscribe failed: {describe(exc)}") from exc

    async def unlisten(self, room: str) -> None:
        self.rooms.pop(room, None)
        self._dirty.discard(room)
        subscriber = self._subscriber
        if subscriber is not None:  # a broken connection starts over without it
            subscriber.send("SUNSUBSCRIBE", self._ctx.keys.channel(room))

    def ring(self, room: str) -> None:
        """Read the room soon (its group may hold entries this run has not delivered); until then it is behind."""
        group = self.rooms.get(room)
        if group is not None:
            group.caught_up = False
            self._dirty.add(room)
            self._wake.set()

    def restart(self) -> None:
        self._restart = True
        self._wake.set()

    def mark(self) -> None:
        """Set the groups to what this process delivered, soon, in this reader's task (``mark_groups``)."""
        self._marking = True
        self._wake.set()

    async def _barrier(self, subscriber: Wire) -> None:
        """Until Redis has done every command sent before: it answers a PING after them."""
        token = f"barrier-{next(self._ctx.tokens)}"
        answered = asyncio.get_running_loop().create_future()
        self._barriers[token] = answered
        try:
            subscriber.send("PING", token)
            await asyncio.wait_for(answered, self._ctx.timeout)
        finally:
            self._barriers.pop(token, None)

    # ---- the session -----------------------------------------------------------

    async def _failed(self, exc: BaseException) -> None:
        self._ctx.redis.health.failed(self.shard.address, describe(exc))
        await self.shard.drop_idle()
        await self._ctx.redis.topology.refresh()

    async def _session(self) -> None:
        subscriber = await self.shard.open_wire()
        self._restart, self._lost = False, None
        for group in self.rooms.values():  # doorbells were missed: read before taking any
            group.caught_up = False
        subscriber.on_push = self._on_push
        try:
            self._subscriber = subscriber
            subscriber.send("SUBSCRIBE", self._ctx.keys.control(self._ctx.incarnation()))
            rooms = list(self.rooms.values())
            for group in rooms:  # one channel a command: on a cluster, channels of one command share a slot
                subscriber.send("SSUBSCRIBE", self._ctx.keys.channel(group.name))
            await self._barrier(subscriber)
            await self._ctx.ensure(self.shard, rooms)
            self._connected.set()
            self._ctx.redis.health.ok(self.shard.address)
            self.runner.healthy()
            for group in rooms:
                self.ring(group.name)
            if rooms:
                asyncio.ensure_future(self._send_lists([group.name for group in rooms]))
            await self._loop()
        finally:
            self._subscriber = None
            self._connected.clear()
            if self._keepalive is not None:
                self._keepalive.cancel()
            for answered in self._barriers.values():
                if not answered.done():
                    answered.set_exception(ConnectionError("subscribed connection lost"))
            subscriber.close()

    async def _loop(self) -> None:
        self._heard = time.monotonic()
        self._keep_alive()
        while True:
            if self.runner.closed:
                return
            if self._restart:
                raise Restart()
            if self._lost is not None:
                raise self._lost
            if self._dirty:
                await self._read()
                continue
            if self._marking:
                self._marking = False
                wire = await self.shard.wire("read")
                await mark_groups(wire, self.rooms.values(), self._marked, self._ctx.incarnation())
                continue
            self._wake.clear()
            await self._wake.wait()

    def _keep_alive(self) -> None:
        """Every IDLE_PING: a quiet connection is asked for a PING, a silent one is given up."""
        subscriber = self._subscriber
        if subscriber is None:
            return
        quiet = time.monotonic() - self._heard
        if quiet > 2 * IDLE_PING + (self._ctx.timeout or IDLE_PING):
            self._lose(ConnectionError("no answer on the subscribed connection"))
            return
        if quiet >= IDLE_PING:
            subscriber.send("PING", "alive")
        self._keepalive = asyncio.get_running_loop().call_later(IDLE_PING, self._keep_alive)

    def _lose(self, exc: BaseException) -> None:
        self._lost = exc
        self._wake.set()

    def _on_push(self, push: Any) -> None:
        self._heard = time.monotonic()
        if isinstance(push, BaseException):  # the connection is gone
            self._lose(push)
            return
        if isinstance(push, ReplyError):
            if redirected(ResponseError(str(push))):
                self.restart()  # a subscription refused: the slot moved, or the cluster is changing
            else:
                self._lose(ResponseError(str(push)))
            return
        kind = push[0]
        if kind == "smessage":
            room = self._ctx.keys.room_of_channel(push[1])
            if room is None or room not in self.rooms:
                return
            if push[2].startswith("["):
                self._rung(self.rooms[room], push[2])
            elif (notice := decode_notice(room, push[2])) is not None:
                self._notify(notice)
        elif kind == "pong":
            answered = self._barriers.get(push[1])
            if answered is not None and not answered.done():
                answered.set_result(None)
        elif kind == "sunsubscribe":
            room = self._ctx.keys.room_of_channel(push[1])
            if room is not None and room in self.rooms:
                self.restart()  # not ours: the slot moved to another shard

    def _rung(self, group: RoomGroup, payload: str) -> None:
        """A doorbell with its entry: delivered now when the room is caught up, else read with the rest."""
        if not group.caught_up:
            self.ring(group.name)
            return
        message = decode_rung(group.name, payload)
        if message is None:
            self.ring(group.name)  # not ours to read: the stream says what it is
        elif group.take(message):
            self._deliver([message])

    def _deliver(self, batch: list[Entry]) -> None:
        if self._ctx.deliver is not None:
            try:
                self._ctx.deliver(batch)
            except Exception:  # a fan-out bug must not wedge the stream: log, go on
                log.exception("bus.deliver_failed", messages=len(batch))

    # ---- reading -----------------------------------------------------------------

    async def _read(self) -> None:
        """One write: per room behind, its group set to what was delivered, then an XREADGROUP (NOACK)."""
        groups = [self.rooms[room] for room in self._dirty if room in self.rooms]
        self._dirty.clear()
        name = self._ctx.incarnation()
        wire = await self.shard.wire("read")
        reads = []
        for group in groups:
            if group.cursor:
                wire.send("XGROUP", "SETID", group.key, name, group.cursor)  # its error comes with the read's
            reads.append(
                wire.send("XREADGROUP", "GROUP", name, name, "COUNT", READ_COUNT, "NOACK", "STREAMS", group.key, ">")
            )
        replies = await asyncio.gather(*reads, return_exceptions=True)
        batch: list[Entry] = []
        lost: list[RoomGroup] = []
        for group, reply in zip(groups, replies):
            if isinstance(reply, BaseException):
                if not lost_group(reply):
                    raise reply
                lost.append(group)
                continue
            entries = reply[0][1] if reply else []
            batch.extend(m for m in (decode_flat(group.name, e) for e in entries) if m is not None and group.take(m))
            if len(entries) >= READ_COUNT:
                self.ring(group.name)  # more to read
            elif group.name not in self._dirty:
                group.caught_up = True  # doorbells heard during the read asked for another
        if lost:
            await self._ctx.ensure(self.shard, lost)
            for group in lost:
                self.ring(group.name)
        if batch:
            self._deliver(batch)

    # ---- notices -----------------------------------------------------------------

    def _notify(self, notice: Notice) -> None:
        if self._ctx.notify is None:
            return
        try:
            self._ctx.notify(notice)
        except Exception:  # a fan-out bug must not end the reader
            log.exception("bus.notify_failed", room=notice.room, kind=notice.kind)

    async def _send_lists(self, rooms: list[str]) -> None:
        """Each room's whole member list, for whatever its members missed while the connection was away."""
        for room in rooms:
            try:
                members = await self._ctx.members(room)
            except BusUnavailable:
                return  # down again: the next session sends the lists
            if room in self.rooms:
                self._notify(Notice.presence(room, dict(members)))
