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

Presence (section 4b): ``streams_presence`` keeps this node's share of each
room's member list in Redis and reaps dead nodes' shares after
``presence_timeout``, in a heartbeat loop of its own; ``streams_notices``
listens on the pub/sub channels of this node's rooms for join, leave and
typing notices. Both are best-effort: their failures never fail a publish
or a join.

Redis Cluster: every script touches keys of one hash tag only, but the reader's
multi-room XREADGROUP would have to be split per slot; this backend speaks to
one Redis, which is what the deployment of contract section 5 runs.

Key names and the Lua scripts are in ``streams_scripts``; the reading half
(groups, the read loop, health) in ``streams_reader``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Awaitable, Callable, TypeVar, cast

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from bus import streams_scripts as lua
from bus.backend import BusUnavailable, Deliver, Notify
from bus.keyed_locks import KeyedLocks
from bus.message import Draft, History, IdKey, Notice, Published, completeness, id_key
from bus.streams_notices import NoticeListener
from bus.streams_presence import NodePresence
from bus.streams_reader import BLOCK_MS, REDIS_ERRORS, GroupReader, Health, RoomGroup, describe
from config.settings import Settings

log = structlog.get_logger("chat.bus")

T = TypeVar("T")
# Connections for commands (the blocking read and pub/sub have their own).
# Commands take well under a millisecond, so 64 serve thousands of joins a
# second; callers beyond that wait for one, within redis_timeout.
POOL_SIZE = 64


class StreamsBackend:
    """The Backend on Redis streams: stored means XADDed; delivery through this node's groups.

    Order per room is the stream's; ``deliver`` gets each entry at most once
    per run of this node and at least once across its restarts (pending
    entries are re-read), and everything stored after ``subscribe`` returns.
    """

    def __init__(self, settings: Settings, on_recovered: Callable[[], None] | None = None) -> None:
        """``on_recovered`` is called each time the bus is back after an outage (a metric)."""
        if not settings.redis_url:
            raise ValueError("StreamsBackend needs settings.redis_url")
        self._node = settings.node_id
        self._retention = settings.retention
        self._resend_ms = int(settings.resend_window * 1000)
        self._timeout = settings.redis_timeout or None  # 0: no limit
        self._dead_after = settings.dead_node_after  # 0: never remove silent nodes
        # Often enough for the shorter of the two limits (0 turns one off).
        limits = [limit for limit in (self._dead_after, settings.presence_timeout) if limit]
        self._beat_every = min(5.0, max(0.05, min(limits) / 4)) if limits else 5.0
        common: dict[str, Any] = dict(
            decode_responses=True, retry=Retry(NoBackoff(), 0),  # no silent resends of a publish
            socket_connect_timeout=self._timeout,
            client_name="chat-" + re.sub(r"[^\w.:-]", "_", self._node),  # CLIENT LIST shows who is who
        )
        # A blocking pool: a burst of joins (every page of a restarted process
        # reconnecting at once) waits for a free connection instead of
        # failing, as redis-py's default pool does past its size.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=POOL_SIZE, timeout=self._timeout,
            socket_timeout=self._timeout, **common)
        self._redis = Redis.from_pool(pool)
        reader = Redis.from_url(  # the blocking reads' own connection: see GroupReader.wake
            settings.redis_url, single_connection_client=True,
            socket_timeout=BLOCK_MS / 1000 + (self._timeout or 5.0), **common,
        )
        self._publish = self._redis.register_script(lua.PUBLISH)
        self._history = self._redis.register_script(lua.HISTORY)
        self._ensure_group = self._redis.register_script(lua.ENSURE_GROUP)
        self._drop_group = self._redis.register_script(lua.DROP_GROUP)
        self._heartbeat = self._redis.register_script(lua.HEARTBEAT)
        self._forget_node = self._redis.register_script(lua.FORGET_NODE)
        self._health = Health(on_recovered)
        self._reader = GroupReader(
            redis=self._redis, reader=reader, node=self._node, timeout=self._timeout,
            ensure_group=self._ensure_group, health=self._health,
            connected=self._registered, drop_later=self._drop_later,
        )
        self._presence = NodePresence(
            redis=self._redis, node=self._node, presence_timeout=settings.presence_timeout, timeout=self._timeout)
        listener = Redis.from_url(  # the subscribed connection is this client's alone
            settings.redis_url, socket_timeout=self._timeout,
            # Bytes: redis-py parses a PING answer in subscribed mode right only undecoded.
            **{**common, "decode_responses": False, "client_name": common["client_name"] + "-notices"})
        self._notices = NoticeListener(client=listener, node=self._node, timeout=self._timeout,
                                       members=self._presence.members)
        self._locks = KeyedLocks()  # subscribe and unsubscribe of a room do not interleave
        # Groups to drop unless a member comes (room -> when): an earlier
        # run's, a failed unsubscribe's, one re-created while unsubscribed.
        self._orphans: dict[str, float] = {}
        self._adopted = False  # the earlier run's groups have been listed
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # ---- the Backend interface ---------------------------------------------

    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        self._tasks = [
            self._reader.start(deliver),
            asyncio.create_task(self._run_heartbeat(), name="bus-heartbeat"),
            asyncio.create_task(self._presence.run(self._beat_every), name="bus-presence"),
            self._notices.start(notify),
        ]
        # Wait for the first connection attempt so /readyz is right from the
        # start. A Redis that is down is not fatal: the reader keeps retrying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader.settled.wait(), 3 * (self._timeout or 5.0))

    async def close(self) -> None:
        """Stop the loops first (nothing reads or acks after this), drop our groups, close connections."""
        if self._closed:
            return
        self._closed = self._reader.closed = self._notices.closed = True
        # Cancelled again until done: Python 3.11's wait_for can swallow a
        # cancellation that lands as its inner call finishes; the loops also
        # check their closed flag, so a lost cancellation ends them next turn.
        tasks = self._tasks
        while pending := [task for task in tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        rooms = list(self._reader.rooms)
        if rooms and self._health.reason is None:
            with contextlib.suppress(BusUnavailable):
                await self._command(lambda: self._drop(rooms), "close")
        if self._health.reason is None:
            # This node's members leave now, not after presence_timeout.
            with contextlib.suppress(*REDIS_ERRORS):
                await self._presence.clear()
        await self._notices.aclose()
        await self._reader.aclose()
        await self._redis.aclose()

    def unavailable_reason(self) -> str | None:
        return "bus closed" if self._closed else self._health.reason

    @property
    def recoveries(self) -> int:
        """How many outages ended (for a reconnects metric)."""
        return self._health.recoveries

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("bus closed")

    async def publish(self, draft: Draft) -> Published:
        self._check_open()
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
        self._check_open()
        keys = [lua.stream_key(room), lua.born_key(room), lua.trimmed_key(room)]
        args: list[Any] = [str(since) if since is not None else "", limit]
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
        self._check_open()
        async with self._locks.hold(room):
            if room in self._reader.rooms:
                return
            self._orphans.pop(room, None)  # an earlier run's group: carry on with it
            group = RoomGroup(room, lua.stream_key(room))
            status, last_delivered, born = await self._command(lambda: self._create_group(group), "subscribe")
            group.grouped(status, last_delivered, born)
            self._reader.add(group)
            await self._notices.listen(room)  # best-effort; returns once Redis has the subscription
        await self._reader.wake()

    async def unsubscribe(self, room: str) -> None:
        async with self._locks.hold(room):
            if self._reader.remove(room) is None or self._closed:
                return  # after close, the groups were dropped with the connections
            await self._notices.unlisten(room)
            await self._reader.wake()  # so the next read no longer names the group we drop
            try:
                await self._command(lambda: self._drop([room]), "unsubscribe")
            except BusUnavailable:
                self._drop_later(room)

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        self._check_open()
        await self._presence.set_connections(room, user, connections)

    async def members(self, room: str) -> list[tuple[str, int]]:
        self._check_open()
        return await self._presence.members(room)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        self._check_open()
        return await self._presence.announce(notice, once_per)

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
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
                if attempt == 2 or not idempotent:
                    raise self._unavailable(what, exc) from exc
            except REDIS_ERRORS as exc:
                raise self._unavailable(what, exc) from exc
        raise AssertionError("unreachable")

    def _unavailable(self, what: str, exc: BaseException) -> BusUnavailable:
        reason = f"redis {what} failed: {describe(exc)}"
        self._health.failed(reason)
        return BusUnavailable(reason)

    async def _create_group(self, group: RoomGroup) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            # Listed before the group exists, so a janitor always finds it.
            pipe.sadd(lua.node_rooms_key(self._node), group.name)
            await self._ensure_group(keys=[group.key, lua.born_key(group.name)], args=[self._node, "", ""], client=pipe)
            _, reply = await pipe.execute()
            return list(reply)

    async def _drop(self, rooms: list[str]) -> None:
        """Destroy this node's groups on these rooms, then unlist them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                await self._drop_group(keys=[lua.stream_key(room), lua.born_key(room)], args=[self._node], client=pipe)
            pipe.srem(lua.node_rooms_key(self._node), *rooms)
            await pipe.execute()

    def _drop_later(self, room: str) -> None:
        self._orphans[room] = 0.0  # the heartbeat loop drops it unless a member came

    async def _drop_if_unused(self, room: str) -> bool:
        """Drop this node's group on a room unless a member joined meanwhile; False if Redis failed."""
        async with self._locks.hold(room):
            if room in self._reader.rooms:
                return True
            try:
                await self._command(lambda: self._drop([room]), "drop")
            except BusUnavailable:
                return False
            return True

    async def _registered(self) -> None:
        """On every (re)connection: heartbeat now; the first time, list an earlier run's groups.

        Presence writes this node's members again in its own loop, whatever
        Redis lost or missed meanwhile; it does not hold up the reader.
        """
        await self._beat()
        self._presence.reconnected()
        if not self._adopted:
            # Groups an earlier run of this node left behind (it was killed):
            # kept for a while for members that come back here, then dropped.
            listed = await self._members(lua.node_rooms_key(self._node))
            drop_at = time.monotonic() + self._dead_after if self._dead_after else float("inf")
            self._orphans.update({room: drop_at for room in listed if room not in self._reader.rooms})
            self._adopted = True

    # ---- heartbeat and janitor -------------------------------------------

    async def _run_heartbeat(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._beat_every)
            try:
                dead = await self._beat()
                if self._dead_after:
                    await self._bury(dead)
                await self._drop_orphans()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                self._health.failed(describe(exc))
            except Exception as exc:
                log.exception("bus.heartbeat_failed")
                self._health.failed(describe(exc))

    async def _beat(self) -> list[tuple[str, str]]:
        """Refresh this node's heartbeat; return (node, score) of nodes silent too long."""
        dead_ms = int(self._dead_after * 1000)
        flat = await asyncio.wait_for(self._heartbeat(keys=[lua.NODES_KEY], args=[self._node, dead_ms]), self._timeout)
        return [(node, score) for node, score in zip(flat[0::2], flat[1::2]) if node != self._node]

    async def _bury(self, dead: list[tuple[str, str]]) -> None:
        """Destroy the groups of nodes gone longer than dead_node_after, then forget them."""
        for node, score in dead:
            rooms_key = lua.node_rooms_key(node)
            rooms = sorted(await self._members(rooms_key))
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    await self._drop_group(keys=[lua.stream_key(room), lua.born_key(room)], args=[node], client=pipe)
                await self._forget_node(keys=[lua.NODES_KEY, rooms_key], args=[node, score, *rooms], client=pipe)
                replies = await asyncio.wait_for(pipe.execute(), self._timeout)
            log.info("bus.node_removed", dead_node=node, groups=sum(replies[:-1]), forgotten=bool(replies[-1]))

    async def _members(self, key: str) -> set[str]:
        return cast(set[str], await asyncio.wait_for(self._redis.smembers(key), self._timeout))

    async def _drop_orphans(self) -> None:
        now = time.monotonic()
        for room, drop_at in list(self._orphans.items()):
            if drop_at <= now and await self._drop_if_unused(room):
                self._orphans.pop(room, None)

