"""The consuming half: this process's consumer group on each subscribed room, read when the room rings.

Each room with local members has a consumer group named after this
process's incarnation on the room's stream. Rooms are grouped by the shard
(Redis master) that serves them, and each shard has one ``ShardReader``:

- one subscribed connection to that shard, ``SSUBSCRIBE``d to the shard
  channel of each of its rooms. Publishing a message rings it (``msg``), and
  join, leave and typing notices travel on it too;
- a read of exactly the rooms that rang: one pipeline per loop iteration
  with an ``XREADGROUP ... COUNT n STREAMS <room> >`` per room (so, on a
  cluster, never a cross-slot command) and the ``XACK``s of the previous
  batch. The cost of a read follows the rooms that had messages, never the
  rooms held, and nothing wakes a reader when a room is added.

A doorbell can be lost only with the connection that carries it; whenever
that connection is (re)made every room of the shard is subscribed again and
read once, and each room is sent its whole member list (``presence``).
Entries are acknowledged after delivery, so entries a reader read but never
delivered stay pending: rooms whose group may hold such entries are read
from id 0 (the pending list) first. Anything read twice within a run is
dropped here (``delivered``): each entry reaches ``deliver`` at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import structlog
from redis.asyncio.client import PubSub

from bus.backend import BusUnavailable, Deliver, Notify
from bus.message import Message, Notice
from bus.redis.client import REDIS_ERRORS, Redis, Restart, Runner, Shard, describe
from bus.redis.groups import RoomGroup, decode_fields, decode_notice, lost_group, text
from bus.redis.keys import MESSAGE_BELL, Keys

log = structlog.get_logger("chat.bus")

READ_COUNT = 256  # entries per room per read
IDLE_PING = 5.0  # seconds without traffic before the subscribed connection is checked with a PING

Members = Callable[[str], Awaitable[list[tuple[str, int]]]]
Ensure = Callable[[Shard, list["RoomGroup"]], Awaitable[None]]


@dataclass
class ReaderContext:
    """What every ShardReader shares: who it is, where messages and notices go, how groups are made."""

    redis: Redis
    keys: Keys
    incarnation: Callable[[], str]
    ensure: Ensure
    members: Members
    deliver: Deliver | None = None
    notify: Notify | None = None
    timeout: float | None = None
    tokens: Any = field(default_factory=lambda: itertools.count(1))


class ShardReader:
    def __init__(self, shard: Shard, ctx: ReaderContext) -> None:
        self.shard = shard
        self.rooms: dict[str, RoomGroup] = {}
        self._ctx = ctx
        self._dirty: set[str] = set()
        self._acks: dict[str, list[str]] = {}
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._writing = asyncio.Lock()  # one writer at a time on the subscribed connection (_send)
        self._wakes: set[asyncio.Future[Any]] = set()  # kept, so that stop() can end them
        self._restart = False
        self._heard = 0.0
        self.runner = Runner(f"reader {shard.address}", self._failed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        name = f"bus-reader-{self.shard.address}"
        self._task = asyncio.create_task(self.runner.run_forever(self._session), name=name)

    async def stop(self) -> None:
        self.runner.closed = True
        for task in [self._task, *self._wakes]:
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)

    # ---- what the consumer asks -------------------------------------------------

    async def listen(self, group: RoomGroup) -> None:
        """Hear the room's doorbell from now on; returns once Redis has the subscription."""
        self.rooms[group.name] = group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._ctx.timeout)
        pubsub = self._pubsub
        if pubsub is None:
            raise BusUnavailable(f"redis {self.shard.address} not connected")
        try:
            await self._send(pubsub.ssubscribe, self._ctx.keys.channel(group.name))
            await self._barrier(pubsub)
        except REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis subscribe failed: {describe(exc)}") from exc

    async def unlisten(self, room: str) -> None:
        self.rooms.pop(room, None)
        self._dirty.discard(room)
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):  # a broken connection starts over without it
                await self._send(pubsub.sunsubscribe, self._ctx.keys.channel(room))

    def ring(self, room: str) -> None:
        """Read the room soon (its group may hold entries this run has not delivered)."""
        self._dirty.add(room)
        self._wake()

    def restart(self) -> None:
        self._restart = True
        self._wake()

    def _wake(self) -> None:
        """A PING's answer ends the wait for the subscribed connection's next message."""
        pubsub = self._pubsub
        if pubsub is not None:
            task = asyncio.ensure_future(self._send(pubsub.ping, b"wake"))
            self._wakes.add(task)
            task.add_done_callback(self._woken)

    def _woken(self, task: "asyncio.Future[Any]") -> None:
        self._wakes.discard(task)
        if not task.cancelled():
            task.exception()  # a lost connection is the session's to notice

    async def _send(self, command: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One writer at a time: Python 3.11 lets one task wait in drain(); a second breaks the connection."""
        async with self._writing:
            return await command(*args)

    async def _barrier(self, pubsub: PubSub) -> None:
        token = f"barrier-{next(self._ctx.tokens)}"
        answered = asyncio.get_running_loop().create_future()
        self._barriers[token] = answered
        try:
            await self._send(pubsub.ping, token)
            await asyncio.wait_for(answered, self._ctx.timeout)
        finally:
            self._barriers.pop(token, None)

    # ---- the session -----------------------------------------------------------

    async def _failed(self, exc: BaseException) -> None:
        self._ctx.redis.health.failed(self.shard.address, describe(exc))
        await self.shard.drop_idle()
        await self._ctx.redis.topology.refresh()

    async def _session(self) -> None:
        pubsub = self.shard.subscriber.pubsub()
        self._restart = False
        try:
            control = self._ctx.keys.control(self._ctx.incarnation())
            await self._send(pubsub.subscribe, control)
            rooms = list(self.rooms.values())
            for group in rooms:  # one channel a command: on a cluster, channels of one command share a slot
                await self._send(pubsub.ssubscribe, self._ctx.keys.channel(group.name))
            await self._first_pong(pubsub)
            self._pubsub = pubsub
            await self._ctx.ensure(self.shard, rooms)
            self._connected.set()
            self._ctx.redis.health.ok(self.shard.address)
            self.runner.healthy()
            self._dirty.update(group.name for group in rooms)
            if rooms:
                asyncio.ensure_future(self._send_lists([group.name for group in rooms]))
            await self._loop(pubsub)
        finally:
            self._pubsub = None
            self._connected.clear()
            for answered in self._barriers.values():
                if not answered.done():
                    answered.set_exception(ConnectionError("subscribed connection lost"))
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()

    async def _first_pong(self, pubsub: PubSub) -> None:
        """Until Redis has every subscription of the session (it answers a PING after them)."""
        token = f"session-{next(self._ctx.tokens)}"
        await self._send(pubsub.ping, token)
        deadline = time.monotonic() + (self._ctx.timeout or IDLE_PING)
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                continue
            if message.get("type") == "pong" and text(message.get("data")) == token:
                return
            self._handle(message)
        raise TimeoutError("no answer to the subscriptions")

    async def _loop(self, pubsub: PubSub) -> None:
        self._heard = time.monotonic()
        while not self.runner.closed:
            if self._restart:
                raise Restart()
            message = await pubsub.get_message(timeout=0 if self._dirty else IDLE_PING)
            while message is not None:
                self._heard = time.monotonic()
                self._handle(message)
                message = await pubsub.get_message(timeout=0)
            if self._dirty:
                await self._read()
            elif self._acks:
                await self._flush_acks()
            elif time.monotonic() - self._heard > 2 * IDLE_PING + (self._ctx.timeout or IDLE_PING):
                raise ConnectionError("no answer on the subscribed connection")
            elif time.monotonic() - self._heard >= IDLE_PING:  # quiet: make Redis say something, or fail
                await self._send(pubsub.ping, b"alive")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "smessage":
            room = self._ctx.keys.room_of_channel(text(message["channel"]))
            if room is None or room not in self.rooms:
                return
            payload = text(message["data"])
            if payload == MESSAGE_BELL:
                self._dirty.add(room)
            elif (notice := decode_notice(room, payload)) is not None:
                self._notify(notice)
        elif kind == "pong":
            answered = self._barriers.get(text(message.get("data")))
            if answered is not None and not answered.done():
                answered.set_result(None)
        elif kind == "sunsubscribe":
            room = self._ctx.keys.room_of_channel(text(message["channel"]))
            if room is not None and room in self.rooms:
                raise Restart()  # not ours: the slot moved to another shard

    # ---- reading -----------------------------------------------------------------

    async def _read(self) -> None:
        groups = [self.rooms[room] for room in self._dirty if room in self.rooms]
        self._dirty.clear()
        name = self._ctx.incarnation()
        acks, self._acks = self._acks, {}
        async with self.shard.client.pipeline(transaction=False) as pipe:
            for key, ids in acks.items():
                pipe.xack(key, name, *ids)
            for group in groups:
                pipe.xreadgroup(name, name, {group.key: "0" if group.pending else ">"}, count=READ_COUNT)
            replies = (await pipe.execute(raise_on_error=False))[len(acks) :]
        batch: list[Message] = []
        lost: list[RoomGroup] = []
        for group, reply in zip(groups, replies):
            if isinstance(reply, Exception):
                if not lost_group(reply):
                    raise reply
                lost.append(group)
                continue
            self._take(group, reply[0][1] if reply else [], batch)
        if lost:
            await self._ctx.ensure(self.shard, lost)
            self._dirty.update(group.name for group in lost)
        if batch and self._ctx.deliver is not None:
            try:
                self._ctx.deliver(batch)
            except Exception:  # a fan-out bug must not wedge the stream: log, ack, go on
                log.exception("bus.deliver_failed", messages=len(batch))

    def _take(self, group: RoomGroup, entries: list[Any], batch: list[Message]) -> None:
        if group.pending and not entries:
            group.pending = False  # the pending list is read: now the new entries
            self._dirty.add(group.name)
            return
        if group.pending or len(entries) >= READ_COUNT:
            self._dirty.add(group.name)
        for message_id, fields in entries:
            message = decode_fields(message_id, group.name, fields)
            if message is None or message.key <= group.delivered:
                continue  # deleted while pending, or already delivered in this run
            group.delivered = message.key
            if group.born is None:  # the group saw the room's very first entry
                group.born = message_id
            batch.append(message)
        if entries:
            group.advance(entries[-1][0])
            self._acks.setdefault(group.key, []).extend(message_id for message_id, _ in entries)

    async def _flush_acks(self) -> None:
        name = self._ctx.incarnation()
        acks, self._acks = self._acks, {}
        async with self.shard.client.pipeline(transaction=False) as pipe:
            for key, ids in acks.items():
                pipe.xack(key, name, *ids)
            await pipe.execute()

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
