"""Presence on Redis: this process's share of each room's member list, and typing notices.

The process remembers what it was told (``wanted``: room -> user ->
connections) and writes it as absolute counts under its incarnation
(``set_connections.lua``), so a write can be repeated at will: after a
failure ``resync`` writes every room's share again, exactly, and whatever
changed meanwhile (users who left, a Redis that came back empty) comes out
right, with its join and leave notices. Taking a dead incarnation's counts
off (``remove``) is the same script with an empty share.

Joins and leaves of one room are written in batches: while a write of the
room is under way, the users who change meanwhile wait together and the
next write carries all their counts (the script takes any number). One
write at a time per room still, but not one per user: a burst of 100 joins
into a room was 100 writes in a row, each join waiting for all before it
with its coroutines, futures and buffered notices held the while, and the
heap they took stayed fragmented after the burst, costing memory on every
idle connection (bench/RESULTS.md, "Measurements formerly in code comments").

Failures stay here: they are reported to the health's ``presence`` part,
never make the bus unready, and never fail a join or a message. The calls
members make raise ``BusUnavailable``; the liveness loop calls ``resync``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from bus.backend import BusUnavailable
from bus.keyed_locks import KeyedLocks
from bus.message import Notice
from bus.redis.client import PRESENCE
from bus.redis.room_parts import RoomParts, UsesRoomParts


class Presence(UsesRoomParts):
    def __init__(self, parts: RoomParts, *, consumed: Callable[[str], bool]) -> None:
        super().__init__(parts)  # the lock is shared with the consumer: a room's listing changes under one lock
        self.dirty = False  # a write failed (or Redis came back): write every share again
        self._consumed = consumed
        self._wanted: dict[str, dict[str, int]] = {}
        self._rooms: set[str] = set()  # rooms where the current incarnation may have counts
        self._next_write: dict[str, _Shared] = {}  # room -> the users waiting for its next write
        self._next_read: dict[str, _Shared] = {}  # room -> the callers waiting for its next read
        self._reading = KeyedLocks()  # one read of a room at a time (writes do not wait for reads)

    def holds(self, room: str) -> bool:
        return room in self._wanted

    # ---- what the members see (raise BusUnavailable) -----------------------------

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        """Remember the count, then write it; when that fails, ``resync`` writes it later."""
        share = self._wanted.setdefault(room, {})
        if connections > 0:
            share[user] = connections
        else:
            share.pop(user, None)
            if not share:
                del self._wanted[room]
        try:
            await self._write_batched(room, user)
        except BusUnavailable:
            self.dirty = True
            raise

    async def members(self, room: str) -> list[tuple[str, int]]:
        """The room's list. Who asks while a read of the room is under way shares the next read.

        That read is sent after each of them asked, so it is as new as each
        needs (a joiner reads after it counts); a burst of joins reads a room
        a few times, not once per joiner with the whole list each time.
        """
        found: list[tuple[str, int]] = await _shared(self._next_read, room, self._reading, lambda _: self._read(room))
        return found

    async def _read(self, room: str) -> list[tuple[str, int]]:
        key = self._keys.users(room)
        flat = await self._redis.command(key, "HGETALL", key, what="presence read", part=PRESENCE)
        return sorted((user, int(count)) for user, count in zip(flat[0::2], flat[1::2]) if int(count) > 0)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        if notice.kind != "typing":
            raise ValueError(f"only typing notices are announced, not {notice.kind!r}")
        keys = [self._keys.typing(notice.room, notice.user), self._keys.channel(notice.room)]
        args: list[Any] = [notice.user, max(1, int(once_per * 1000))]

        return bool(await self._redis.script(keys[0], self._scripts.typing, keys, args, "typing", part=PRESENCE))

    # ---- writing ---------------------------------------------------------------------

    async def resync(self) -> None:
        """Write every share again, exactly (after a failure, or under a new incarnation)."""
        self.dirty = False  # set again by any failure from here on
        try:
            for room in sorted(set(self._wanted) | self._rooms):
                await self._write(room, None)
        except BusUnavailable:
            self.dirty = True
            raise
        self._redis.health.ok(PRESENCE)

    def new_incarnation(self) -> None:
        self._rooms.clear()
        self.dirty = True

    async def _write_batched(self, room: str, user: str) -> None:
        """Write the user's count in the room's next write, with every user who changed meanwhile.

        Counts are read under the room's lock, so each caller's change is in
        the write it waits for.
        """
        await _shared(self._next_write, room, self._locks, lambda users: self._write_held(room, sorted(users)), user)

    async def _write(self, room: str, users: list[str] | None) -> None:
        async with self._locks.hold(room):
            await self._write_held(room, users)

    async def _write_held(self, room: str, users: list[str] | None) -> None:
        """Write the listed users' counts, or (None) this process's whole share of the room.

        Under the room's lock (the caller holds it) and reading ``wanted`` only
        then, so whatever order the callers came in, the last write carries the
        latest counts.
        """
        incarnation = self._incarnation()
        share = self._wanted.get(room, {})
        listing = self._keys.rooms_of(incarnation)
        if share and room not in self._rooms:  # listed before the counts exist: a janitor finds them
            await self._redis.command(listing, "SADD", listing, room, what="presence list", part=PRESENCE)
            self._rooms.add(room)
        counts = share.items() if users is None else [(user, share.get(user, 0)) for user in users]
        await self._set(incarnation, room, [x for pair in counts for x in pair], exact=users is None)
        if not share and room in self._rooms:
            self._rooms.discard(room)
            if not self._consumed(room):
                await self._redis.command(listing, "SREM", listing, room, what="presence unlist", part=PRESENCE)

    async def remove(self, incarnation: str, room: str) -> None:
        """Take an incarnation's counts off a room (publishing leaves for users now gone)."""
        async with self._locks.hold(room):
            await self._set(incarnation, room, [], exact=True)

    async def _set(self, incarnation: str, room: str, counts: list[Any], *, exact: bool) -> None:
        keys = [self._keys.members(room, incarnation), self._keys.users(room), self._keys.channel(room)]

        args = ["1" if exact else "0", *counts]
        await self._redis.script(keys[0], self._scripts.set_connections, keys, args, "presence write", part=PRESENCE)

    async def clear(self) -> None:
        """On close: this process's members leave now, not after the presence timeout."""
        self._wanted.clear()
        for room in sorted(self._rooms):
            await self.remove(self._incarnation(), room)
        self._rooms.clear()


@dataclass(eq=False)
class _Shared:
    """The next call of one room's write or read, and who waits for it (a write: the users it carries)."""

    users: set[str]
    done: asyncio.Future[Any]


async def _shared(
    pending: dict[str, _Shared],
    room: str,
    locks: KeyedLocks,
    call: Callable[[set[str]], Awaitable[Any]],
    user: str | None = None,
) -> Any:
    """``call`` once the room's lock is free, shared by everyone who asks before it starts.

    The first caller runs it; who asks meanwhile (adding ``user``) waits for
    the same call and shares its outcome. Once the lock is taken the entry
    is dropped, so who asks from then on waits for the next call, which is
    sent after they asked: as new as each of them needs.
    """
    entry = pending.get(room)
    if entry is not None:
        if user is not None:
            entry.users.add(user)
        return await asyncio.shield(entry.done)
    entry = pending[room] = _Shared({user} if user is not None else set(), asyncio.get_running_loop().create_future())
    try:
        async with locks.hold(room):
            if pending.get(room) is entry:
                del pending[room]
            result = await call(entry.users)
    except BaseException as exc:  # failed, or its caller was cancelled: the waiters get BusUnavailable
        if pending.get(room) is entry:
            del pending[room]
        entry.done.set_exception(exc if isinstance(exc, BusUnavailable) else BusUnavailable(f"presence: {exc!r}"))
        entry.done.exception()  # retrieved: a caller alone has no one else to tell
        raise
    entry.done.set_result(result)
    return result
