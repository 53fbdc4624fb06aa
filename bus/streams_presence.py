"""Presence on Redis: this node's share of each room's member list, and the reaping of dead nodes' shares.

Counts are kept per node *incarnation* (``<node>/<token>``; keys and scripts in
``streams_scripts``). The node remembers what it was told (``wanted``: room ->
user -> connections) and writes it as absolute counts, so a write can be
repeated at will: after a failure, ``maintain`` writes every room's share
again, exactly, and whatever changed meanwhile (users who left, a Redis that
came back empty) comes out right, with its join and leave notices.

Dead nodes: every heartbeat of every node refreshes its incarnation in a
sorted set and lists the others. One silent for longer than
``presence_timeout`` is dead for good (``PRESENCE_BEAT`` will not refresh it),
so any node may take its counts off every room it listed (publishing the
leaves) without racing its return: a node that finds its own incarnation dead
(it was paused, or Redis lost the set) starts a new one, writes its shares
under it, then removes the old one's. A node that starts takes the counts of
its own earlier incarnations off at once: their connections died with them.

Failures stay here. Presence has a loop of its own (``run``) and never
reports to the bus's health (/readyz, the reader's recovery): a presence error
must not hold up a message. The calls members make raise ``BusUnavailable``;
``maintain`` never raises. One ``presence.error`` is logged per outage and
``presence.recovered`` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bus import streams_scripts as lua
from bus.backend import BusUnavailable
from bus.keyed_locks import KeyedLocks
from bus.message import Notice
from bus.streams_reader import REDIS_ERRORS, describe

log = structlog.get_logger("chat.bus")

T = TypeVar("T")


@dataclass(eq=False)
class _Incarnation:
    name: str
    rooms: set[str] = field(default_factory=set)  # rooms where it may have counts in Redis
    registered: bool = False  # its heartbeat is recorded


def _new_incarnation(node: str) -> _Incarnation:
    return _Incarnation(f"{node}/{secrets.token_hex(4)}")


def node_of(incarnation: str) -> str:
    return incarnation.rpartition("/")[0]


class NodePresence:
    def __init__(self, *, redis: Redis, node: str, presence_timeout: float, timeout: float | None) -> None:
        self._redis = redis
        self._node = node
        self._timeout_ms = int(presence_timeout * 1000)  # 0: dead nodes are never reaped
        self._timeout = timeout
        self._set = redis.register_script(lua.SET_CONNECTIONS)
        self._beat_script = redis.register_script(lua.PRESENCE_BEAT)
        self._typing = redis.register_script(lua.TYPING)
        self._forget = redis.register_script(lua.FORGET_NODE)
        self._wanted: dict[str, dict[str, int]] = {}
        self._current = _new_incarnation(node)
        self._retired: list[_Incarnation] = []  # earlier incarnations whose counts are still to remove
        self._locks = KeyedLocks()  # one room's writes in order: the last one carries the latest counts
        self._serial = asyncio.Lock()  # upkeep and close: one incarnation change at a time
        self._dirty = False  # a write failed (or Redis came back): write every share again
        self._healthy = True
        self._wake = asyncio.Event()

    @property
    def incarnation(self) -> str:
        return self._current.name

    # ---- what the members see (raise BusUnavailable) -------------------------

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        """Remember the count, then write it; when that fails, ``maintain`` writes it later."""
        share = self._wanted.setdefault(room, {})
        if connections > 0:
            share[user] = connections
        else:
            share.pop(user, None)
            if not share:
                del self._wanted[room]
        await self._member_call(lambda: self._write(room, [user]), "write")

    async def members(self, room: str) -> list[tuple[str, int]]:
        async def read() -> dict[str, str]:
            return cast(dict[str, str], await self._redis.hgetall(lua.users_key(room)))
        found = await self._member_call(lambda: self._call(read), "read")
        return sorted((user, int(count)) for user, count in found.items() if int(count) > 0)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        if notice.kind != "typing":
            raise ValueError(f"only typing notices are announced, not {notice.kind!r}")
        keys = [lua.typing_key(notice.room, notice.user)]
        args: list[Any] = [lua.notices_channel(notice.room), notice.user, max(1, int(once_per * 1000))]
        return bool(await self._member_call(lambda: self._call(lambda: self._typing(keys=keys, args=args)), "typing"))

    async def _member_call(self, make_call: Callable[[], Awaitable[T]], what: str) -> T:
        try:
            return await make_call()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            raise BusUnavailable(f"redis presence {what} failed: {describe(exc)}") from exc

    # ---- upkeep (never raises) ---------------------------------------------

    async def run(self, every: float) -> None:
        """Runner: ``maintain`` now, then every ``every`` seconds and whenever ``reconnected`` is called."""
        while True:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end presence for good
                log.exception("presence.failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), every)
            self._wake.clear()

    def reconnected(self) -> None:
        """The bus's connection to Redis is back: whatever it lost or missed, write every share again now."""
        self._dirty = True
        self._wake.set()

    async def maintain(self) -> None:
        """Heartbeat, reap dead incarnations, and write every share again if anything was lost.

        Failures are logged once per outage; the next call tries again.
        """
        try:
            async with self._serial:
                await self._upkeep()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return
        if not self._healthy:
            log.info("presence.recovered")
            self._healthy = True

    def _failed(self, exc: BaseException) -> None:
        self._dirty = True
        if self._healthy:
            log.warning("presence.error", reason=describe(exc))
            self._healthy = False

    async def _upkeep(self) -> None:
        alive, dead = await self._beat()
        if not alive:
            # Taken for dead (paused too long, or Redis lost the set): start over.
            old, self._current = self._current, _new_incarnation(self._node)
            self._retired.append(old)
            log.warning("presence.restarted", old=old.name, new=self._current.name)
            _, dead = await self._beat()
            self._dirty = True
        if self._dirty:
            await self._resync()
        await self._reap(dead)

    async def _resync(self) -> None:
        self._dirty = False  # set again by any failure from here on
        for room in sorted(set(self._wanted) | self._current.rooms):
            await self._write(room, None)
        # The new shares first, then the old ones off: a user on this node
        # stays in the room throughout, without a leave and a join again.
        while self._retired:
            await self._forget_incarnation(self._retired[0])
            self._retired.pop(0)

    async def clear(self) -> None:
        """On close: take this node's counts off every room and forget its incarnations (raises Redis errors)."""
        self._wanted.clear()
        async with self._serial:
            for incarnation in [*self._retired, self._current]:
                await self._forget_incarnation(incarnation)
            self._retired.clear()

    # ---- writing -------------------------------------------------------------

    async def _call(self, make_call: Callable[[], Awaitable[T]]) -> T:
        """One Redis call within the timeout. After a Redis restart the pool's
        idle connections are dead and each would fail once: on a connection
        error they are dropped and the call (always idempotent here) tried again."""
        try:
            return await asyncio.wait_for(make_call(), self._timeout)
        except RedisConnectionError:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._redis.connection_pool.disconnect(inuse_connections=False)
        return await asyncio.wait_for(make_call(), self._timeout)

    async def _write(self, room: str, users: list[str] | None) -> None:
        """Write the listed users' counts in a room, or (None) this node's whole share of it exactly.

        Under the room's lock and reading ``wanted`` only then, so whatever
        order the callers came in, the last write carries the latest counts.
        """
        async with self._locks.hold(room):
            incarnation = self._current
            incarnation.rooms.add(room)  # before the write: a retirement must find it

            async def call() -> None:
                share = self._wanted.get(room, {})
                counts = share.items() if users is None else [(user, share.get(user, 0)) for user in users]
                await self._pipe_write(incarnation.name, room, [x for pair in counts for x in pair],
                                       exact=users is None, listed=bool(share))
            await self._call(call)
            if room not in self._wanted:
                incarnation.rooms.discard(room)

    async def _pipe_write(self, incarnation: str, room: str, counts: list[Any], *, exact: bool, listed: bool) -> None:
        rooms_key = lua.presence_rooms_key(incarnation)
        async with self._redis.pipeline(transaction=False) as pipe:
            if listed:  # listed before the counts exist, so a janitor always finds them
                pipe.sadd(rooms_key, room)
            keys = [lua.members_key(room, incarnation), lua.users_key(room)]
            await self._set(keys=keys, args=[lua.notices_channel(room), "1" if exact else "0", *counts], client=pipe)
            if not listed:  # nothing of ours left in the room (the lock keeps a join from slipping in)
                pipe.srem(rooms_key, room)
            await pipe.execute()

    async def _remove(self, incarnation: str, room: str) -> None:
        """Take an incarnation's counts off a room (publishing leaves for users now gone)."""
        keys = [lua.members_key(room, incarnation), lua.users_key(room)]
        async with self._locks.hold(room):
            await self._call(lambda: self._set(keys=keys, args=[lua.notices_channel(room), "1"]))

    async def _forget_incarnation(self, incarnation: _Incarnation) -> None:
        for room in sorted(incarnation.rooms):
            await self._remove(incarnation.name, room)
            incarnation.rooms.discard(room)

        async def forget() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(lua.PRESENCE_KEY, incarnation.name)
                pipe.delete(lua.presence_rooms_key(incarnation.name))
                await pipe.execute()
        await self._call(forget)

    # ---- heartbeat and janitor -----------------------------------------------

    async def _beat(self) -> tuple[bool, list[tuple[str, str]]]:
        """Refresh this incarnation; (False, []) if it is dead, else (True, the dead others and their scores)."""
        incarnation = self._current
        args: list[Any] = [incarnation.name, self._timeout_ms, "0" if incarnation.registered else "1"]
        alive, now_ms, flat = await self._call(lambda: self._beat_script(keys=[lua.PRESENCE_KEY], args=args))
        if not alive:
            return False, []
        incarnation.registered = True
        return True, [
            (name, score) for name, score in zip(flat[0::2], flat[1::2])
            if name != incarnation.name and self._dead(name, float(score), int(now_ms))
        ]

    def _dead(self, incarnation: str, score: float, now_ms: int) -> bool:
        # Another incarnation of this node is an earlier run of it (or one it
        # retired): its connections are gone, whatever its heartbeat says.
        if node_of(incarnation) == self._node:
            return True
        return self._timeout_ms > 0 and now_ms - score > self._timeout_ms

    async def _reap(self, dead: list[tuple[str, str]]) -> None:
        for incarnation, score in dead:
            rooms_key = lua.presence_rooms_key(incarnation)
            rooms = sorted(cast(set[str], await self._call(lambda: self._redis.smembers(rooms_key))))
            for room in rooms:
                await self._remove(incarnation, room)
            forgotten = await self._call(
                lambda: self._forget(keys=[lua.PRESENCE_KEY, rooms_key], args=[incarnation, score, *rooms]))
            log.info("presence.node_removed", dead_node=incarnation, rooms=len(rooms), forgotten=bool(forgotten))
