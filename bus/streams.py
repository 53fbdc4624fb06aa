"""Redis Streams backend: one stream per room, one consumer group per node.

Publish is one Lua script (``streams_scripts.PUBLISH``): check the resend key,
``XADD``, remember the room's epoch (its first id) and the resend key, and
trim to ``retention`` in batches, recording the newest id trimmed. The entry
id is the message id.

Delivery: this node has a consumer group named after its node id on the stream
of every room with local members, created at the stream's end when the first
member joins (so everything stored after ``subscribe`` returns is delivered)
and destroyed when the last one leaves. One reader task reads all those
streams with a single ``XREADGROUP ... COUNT .. BLOCK .. >``, decodes each
entry once, hands the batch to ``deliver`` and then ``XACK``s it (one XACK per
room per batch, pipelined). Entries are acknowledged only after delivery, so a
node that dies keeps them pending; restarted under the same id it re-reads its
pending entries (``XREADGROUP`` with id 0) before new ones and carries on from
its group's last-delivered id. Within one run, anything re-read is dropped
here (``delivered``), so each entry reaches ``deliver`` at most once per run.

Failures: every command is bounded by ``redis_timeout``; a publish, history
read or subscribe that fails raises ``BusUnavailable``. The first failure of
an outage logs ``bus.error`` and sets ``unavailable_reason``; the reader retries
with exponential backoff, and once Redis answers it re-registers the node,
re-creates missing groups (``ENSURE_GROUP`` decides where: at the node's cursor
if the room's epoch is unchanged, else at 0 because a Redis that restarted
empty holds only entries this node never saw), re-reads pending entries and
logs ``bus.recovered``. Nodes heartbeat into a sorted set; a node silent for
``dead_node_after`` seconds has its groups destroyed by whichever node notices.

Redis Cluster: every script touches keys of one hash tag only, but the reader's
multi-room XREADGROUP would have to be split per slot; this backend speaks to
one Redis (or a proxy), which is what the deployment of contract section 5 runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from bus import streams_scripts as lua
from bus.backend import BusUnavailable, Deliver
from bus.message import Draft, History, IdKey, Message, Published, completeness, id_key
from config.settings import Settings

log = structlog.get_logger("chat.bus")

T = TypeVar("T")
_ZERO = IdKey(0, 0)
BLOCK_MS = 2000  # longest XREADGROUP wait; also how soon a healthy reader notices a failure seen elsewhere
READ_COUNT = 256  # entries per room per read
WAKE_ATTEMPTS = 50
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _lost_group(exc: ResponseError) -> bool:
    """A read failed because a group or stream vanished (Redis restarted empty, a janitor, DEL)."""
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


@dataclass(eq=False)
class _Room:
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


class _Health:
    """Up or down, with a reason; logs one bus.error per outage and bus.recovered after it."""

    def __init__(self) -> None:
        self.reason: str | None = "not connected to redis yet"
        self.recoveries = 0
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
        elif self.reason is not None:
            log.info("bus.connected")
        self._outage_started = None
        self.reason = None


class _RoomLocks:
    """One lock per room while anyone holds or awaits it: subscribe and unsubscribe of a room do not interleave."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, room: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(room, (asyncio.Lock(), 0))
        self._locks[room] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room]
            if users == 1:
                del self._locks[room]
            else:
                self._locks[room] = (lock, users - 1)


class StreamsBackend:
    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ValueError("StreamsBackend needs settings.redis_url")
        self._node = settings.node_id
        self._retention = settings.retention
        self._resend_ms = int(settings.resend_window * 1000)
        self._timeout = settings.redis_timeout or None  # 0: no limit
        self._dead_after = settings.dead_node_after  # 0: never remove silent nodes
        self._beat_every = min(5.0, max(0.05, self._dead_after / 4)) if self._dead_after else 5.0
        common: dict[str, Any] = dict(
            decode_responses=True, retry=Retry(NoBackoff(), 0),  # no silent resends of a publish
            socket_connect_timeout=self._timeout,
            client_name="chat-" + re.sub(r"[^\w.:-]", "_", self._node),  # CLIENT LIST shows who is who
        )
        self._redis = Redis.from_url(settings.redis_url, socket_timeout=self._timeout, **common)
        # The blocking read has a connection of its own, so that a room added
        # while it blocks can wake it at once with CLIENT UNBLOCK (a clean
        # "timed out" reply, the connection stays usable) instead of waiting
        # out the block or cancelling the read (which would drop the
        # connection). A short block plus an event would add that block's
        # latency to every first join of a room on this node.
        self._reader = Redis.from_url(
            settings.redis_url, single_connection_client=True,
            socket_timeout=BLOCK_MS / 1000 + (self._timeout or 5.0), **common,
        )
        self._publish = self._redis.register_script(lua.PUBLISH)
        self._history = self._redis.register_script(lua.HISTORY)
        self._ensure_group = self._redis.register_script(lua.ENSURE_GROUP)
        self._drop_group = self._redis.register_script(lua.DROP_GROUP)
        self._heartbeat = self._redis.register_script(lua.HEARTBEAT)
        self._forget_node = self._redis.register_script(lua.FORGET_NODE)
        self._rooms: dict[str, _Room] = {}
        self._by_key: dict[str, _Room] = {}
        self._locks = _RoomLocks()
        # Groups to drop once unused: an earlier run's, or a failed unsubscribe's -> when.
        self._orphans: dict[str, float] = {}
        self._adopted = False  # the earlier run's groups have been listed
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._health = _Health()
        self._deliver: Deliver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._settled = asyncio.Event()  # the first connection attempt is over
        self._rooms_changed = asyncio.Event()
        self._reader_id: int | None = None
        self._read_gen = 0
        self._blocked = False
        self._backoff = BACKOFF_MIN

    # ---- the Backend interface ---------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._tasks = [
            asyncio.create_task(self._run_reader(), name="bus-reader"),
            asyncio.create_task(self._run_heartbeat(), name="bus-heartbeat"),
        ]
        # Wait for the first connection attempt so /readyz is right from the
        # start. A Redis that is down is not fatal: the reader keeps retrying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), 3 * (self._timeout or 5.0))

    async def close(self) -> None:
        """Stop the loops first (nothing reads or acks after this), drop our groups, close connections."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rooms, self._rooms, self._by_key = list(self._rooms), {}, {}
        if rooms and self._health.reason is None:
            with contextlib.suppress(BusUnavailable):
                await self._command(lambda: self._drop(rooms), "close")
        await self._reader.aclose()
        await self._redis.aclose()

    def unavailable_reason(self) -> str | None:
        return "bus closed" if self._closed else self._health.reason

    @property
    def recoveries(self) -> int:
        """How many outages ended (for a reconnects metric)."""
        return self._health.recoveries

    async def publish(self, draft: Draft) -> Published:
        if self._closed:
            raise BusUnavailable("bus closed")
        keys = [lua.stream_key(draft.room), lua.born_key(draft.room), lua.trimmed_key(draft.room)]
        args: list[Any] = [self._retention, draft.user, draft.text]
        if draft.client_id is not None and self._resend_ms > 0:
            keys.append(lua.resend_key(draft.room, draft.user, draft.client_id))
            args += [draft.client_id, self._resend_ms]
        reply = await self._command(
            lambda: self._publish(keys=keys, args=args), "publish", idempotent=len(keys) == 4)
        message_id, duplicate = str(reply[0]), bool(reply[1])
        if not duplicate:
            return Published(draft.stored_as(message_id))
        # The original may have been trimmed away since; its id is what the sender needs.
        original = lua.decode_flat(draft.room, [message_id, reply[2]]) if len(reply) > 2 else None
        return Published(original or draft.stored_as(message_id), duplicate=True)

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        keys = [lua.stream_key(room), lua.born_key(room), lua.trimmed_key(room)]
        args = [str(since) if since is not None else "", limit]
        born, deleted, trimmed, length, last_id, entries = await self._command(
            lambda: self._history(keys=keys, args=args), "history")
        messages = [m for m in (lua.decode_flat(room, entry) for entry in entries) if m is not None]
        if since is None:
            messages.reverse()  # XREVRANGE gave the newest first
        complete = completeness(
            since, born=id_key(born) if born else None,
            max_deleted=max(id_key(deleted), id_key(trimmed or "0-0")),
            retained=int(length), replayed=len(messages),
        )
        return History(messages, last_id or None, complete)

    async def subscribe(self, room: str) -> None:
        async with self._locks.hold(room):
            if room in self._rooms:
                return
            self._orphans.pop(room, None)  # an earlier run's group: carry on with it
            state = _Room(room, lua.stream_key(room))
            status, last_delivered, born = await self._command(lambda: self._create_group(state), "subscribe")
            state.grouped(status, last_delivered, born)
            self._rooms[room], self._by_key[state.key] = state, state
        await self._wake_reader()

    async def unsubscribe(self, room: str) -> None:
        async with self._locks.hold(room):
            state = self._rooms.pop(room, None)
            if state is None:
                return
            self._by_key.pop(state.key, None)
            await self._wake_reader()  # so the next read no longer names the group we drop
            try:
                await self._command(lambda: self._drop([room]), "unsubscribe")
            except BusUnavailable:
                self._orphans[room] = 0.0  # the heartbeat loop retries the drop

    # ---- Redis calls -----------------------------------------------------

    async def _command(self, make_call: Callable[[], Awaitable[T]], what: str, idempotent: bool = True) -> T:
        """Run one Redis call within redis_timeout; failures become BusUnavailable.

        A connection that Redis closed (it restarted) fails its next command;
        redis-py only finds out by using it. So on a connection error the
        pool's idle connections are dropped, and an idempotent call is tried
        once more on a fresh one. A publish without client_id is not retried:
        if Redis ran it before the connection broke, it would be stored twice.
        """
        for attempt in (1, 2):
            try:
                return await asyncio.wait_for(make_call(), self._timeout)
            except RedisConnectionError as exc:
                await self._redis.connection_pool.disconnect(inuse_connections=False)
                if attempt == 2 or not idempotent:
                    raise self._unavailable(what, exc) from exc
            except _REDIS_ERRORS as exc:
                raise self._unavailable(what, exc) from exc
        raise AssertionError("unreachable")

    def _unavailable(self, what: str, exc: BaseException) -> BusUnavailable:
        reason = f"redis {what} failed: {_describe(exc)}"
        self._health.failed(reason)
        return BusUnavailable(reason)

    async def _create_group(self, state: _Room) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            # Listed before the group exists, so a janitor always finds it.
            pipe.sadd(lua.node_rooms_key(self._node), state.name)
            await self._ensure_group(keys=[state.key, lua.born_key(state.name)], args=[self._node, "", ""], client=pipe)
            _, reply = await pipe.execute()
            return list(reply)

    async def _drop(self, rooms: list[str]) -> None:
        """Destroy this node's groups on these rooms, then unlist them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                await self._drop_group(keys=[lua.stream_key(room), lua.born_key(room)], args=[self._node], client=pipe)
            pipe.srem(lua.node_rooms_key(self._node), *rooms)
            await pipe.execute()

    async def _ensure_all(self) -> None:
        """Re-create whichever of this node's groups vanished; re-read pending entries of all."""
        rooms = list(self._rooms.values())
        if not rooms:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(lua.node_rooms_key(self._node), *[state.name for state in rooms])
            for state in rooms:
                await self._ensure_group(
                    keys=[state.key, lua.born_key(state.name)],
                    args=[self._node, state.born or "", state.cursor], client=pipe)
            replies = await asyncio.wait_for(pipe.execute(), self._timeout)
        for state, (status, last_delivered, born) in zip(rooms, replies[1:]):
            state.grouped(status, last_delivered, born)
        for state in rooms:
            if self._rooms.get(state.name) is None:
                # Unsubscribed while we re-created its group: drop it again.
                task = asyncio.ensure_future(self._drop_if_unused(state.name))
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)

    async def _drop_if_unused(self, room: str) -> bool:
        """Drop this node's group on a room unless a member joined meanwhile; False if Redis failed."""
        async with self._locks.hold(room):
            if room in self._rooms:
                return True
            try:
                await self._command(lambda: self._drop([room]), "drop")
            except BusUnavailable:
                return False
            return True

    # ---- the reader ------------------------------------------------------

    async def _run_reader(self) -> None:
        """Runner: keep the consumer going; on failure mark the bus down and back off."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                self._health.failed(_describe(exc))
                # The reader's connection is the first to see Redis go; the
                # pool's idle ones would each fail one command before learning it.
                with contextlib.suppress(*_REDIS_ERRORS):
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
            except Exception as exc:  # a bug must not stop delivery for good
                log.exception("bus.reader_failed")
                self._health.failed(_describe(exc))
            self._settled.set()
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _consume(self) -> None:
        self._reader_id = None
        self._reader_id = await asyncio.wait_for(self._reader.client_id(), self._timeout)
        await self._reconnected()
        while True:
            if self._health.reason is not None:
                await self._reconnected()  # a failure seen elsewhere: groups may be gone
            try:
                await self._drain_pending()
                await self._read_new()
            except ResponseError as exc:
                if not _lost_group(exc):
                    raise
                await self._ensure_all()

    async def _reconnected(self) -> None:
        await self._beat()
        if not self._adopted:
            # Groups an earlier run of this node left behind (it was killed):
            # kept for a while for members that come back here, then dropped.
            listed = await asyncio.wait_for(self._redis.smembers(lua.node_rooms_key(self._node)), self._timeout)
            drop_at = time.monotonic() + self._dead_after if self._dead_after else float("inf")
            self._orphans.update({room: drop_at for room in listed if room not in self._rooms})
            self._adopted = True
        await self._ensure_all()
        self._health.ok()
        self._backoff = BACKOFF_MIN
        self._settled.set()

    async def _drain_pending(self) -> None:
        """Re-read this consumer's pending entries (id 0 onwards) of the rooms that may have some."""
        cursors = {state.key: "0" for state in self._rooms.values() if state.pending}
        while cursors:
            reply = await asyncio.wait_for(
                self._reader.xreadgroup(self._node, self._node, cursors, count=READ_COUNT), self._timeout)
            returned = {key: entries for key, entries in reply}
            for key in list(cursors):
                entries = returned.get(key)
                state = self._by_key.get(key)
                if not entries or state is None:
                    del cursors[key]
                    if state is not None:
                        state.pending = False
                else:
                    cursors[key] = entries[-1][0]
            await self._handle(reply)

    async def _read_new(self) -> None:
        live = {state.key: ">" for state in self._rooms.values() if not state.pending}
        if not live:
            if not self._rooms:
                self._rooms_changed.clear()
                with contextlib.suppress(TimeoutError):
                    # Bounded, so an outage seen by the heartbeat is retried from here.
                    await asyncio.wait_for(self._rooms_changed.wait(), BLOCK_MS / 1000)
            return
        self._read_gen += 1
        self._blocked = True  # set with the snapshot, before any await: see _wake_reader
        try:
            reply = await self._reader.xreadgroup(
                self._node, self._node, live, count=READ_COUNT, block=BLOCK_MS)
        finally:
            self._blocked = False
        await self._handle(reply)

    async def _wake_reader(self) -> None:
        """Make the reader re-issue its read with the current rooms, now.

        CLIENT UNBLOCK answers 0 when the read has not reached Redis yet (or
        its reply is on the way back); retrying covers the first case, and the
        reader's flag going down ends the second.
        """
        self._rooms_changed.set()
        generation = self._read_gen
        for _ in range(WAKE_ATTEMPTS):
            if not self._blocked or self._read_gen != generation or self._reader_id is None:
                return
            try:
                if await asyncio.wait_for(self._redis.client_unblock(self._reader_id), self._timeout):
                    return
            except _REDIS_ERRORS:
                return  # the read will end by itself within BLOCK_MS

    async def _handle(self, reply: list[Any]) -> None:
        """Decode each entry once, deliver the batch, then acknowledge it."""
        batch: list[Message] = []
        acks: dict[str, list[str]] = {}
        for key, entries in reply:
            state = self._by_key.get(key)
            if state is None or not entries:
                continue
            for message_id, fields in entries:
                message = lua.decode_fields(message_id, state.name, fields)
                if message is None or message.key <= state.delivered:
                    continue  # deleted while pending, or already delivered in this run
                state.delivered = message.key
                if state.born is None:  # the group saw the room's very first entry
                    state.born = message_id
                batch.append(message)
            state.advance(entries[-1][0])
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

    # ---- heartbeat and janitor -------------------------------------------

    async def _run_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._beat_every)
            try:
                dead = await self._beat()
                if self._dead_after:
                    await self._bury(dead)
                await self._drop_orphans()
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                self._health.failed(_describe(exc))
            except Exception as exc:
                log.exception("bus.heartbeat_failed")
                self._health.failed(_describe(exc))

    async def _beat(self) -> list[tuple[str, str]]:
        """Refresh this node's heartbeat; return (node, score) of nodes silent too long."""
        dead_ms = int(self._dead_after * 1000)
        flat = await asyncio.wait_for(self._heartbeat(keys=[lua.NODES_KEY], args=[self._node, dead_ms]), self._timeout)
        return [(node, score) for node, score in zip(flat[0::2], flat[1::2]) if node != self._node]

    async def _bury(self, dead: list[tuple[str, str]]) -> None:
        """Destroy the groups of nodes gone longer than dead_node_after, then forget them."""
        for node, score in dead:
            rooms_key = lua.node_rooms_key(node)
            rooms = sorted(await asyncio.wait_for(self._redis.smembers(rooms_key), self._timeout))
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    await self._drop_group(keys=[lua.stream_key(room), lua.born_key(room)], args=[node], client=pipe)
                await self._forget_node(keys=[lua.NODES_KEY, rooms_key], args=[node, score, *rooms], client=pipe)
                replies = await asyncio.wait_for(pipe.execute(), self._timeout)
            log.info("bus.node_removed", dead_node=node, groups=sum(replies[:-1]), forgotten=bool(replies[-1]))

    async def _drop_orphans(self) -> None:
        now = time.monotonic()
        for room, drop_at in list(self._orphans.items()):
            if drop_at <= now and await self._drop_if_unused(room):
                self._orphans.pop(room, None)

