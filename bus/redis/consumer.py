"""Which rooms this process consumes, and which shard's reader reads each.

``subscribe`` makes the room's doorbell heard first and the group second,
so that every message stored after the group exists rings a bell this process
hears: everything stored after ``subscribe`` returns is delivered. A room is
listed under this incarnation (``rooms_of``) before its group exists, so a
janitor always finds the group if this process dies. When the slot map
changes (a failover), rooms move to the reader of their new master, which
subscribes them again and reads them once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from bus.backend import BusUnavailable, Deliver, Notify
from bus.redis.client import REDIS_ERRORS, Shard, describe
from bus.redis.groups import RoomGroup
from bus.redis.room_parts import RoomParts, UsesRoomParts
from bus.redis.shard_reader import Members, ReaderContext, ShardReader

DROP_LATER = 0.0  # orphans are dropped by the next liveness tick...
RECHECK = 10.0  # ...and once more this much later: a command that timed out here may still run there


class Consumer(UsesRoomParts):
    def __init__(self, parts: RoomParts, *, members: Members, timeout: float | None, room_ttl_ms: int) -> None:
        super().__init__(parts)  # the lock is shared with presence: a room's listing changes under one lock
        self.groups: dict[str, RoomGroup] = {}
        self._ttl_ms = room_ttl_ms
        self._readers: dict[str, ShardReader] = {}
        self._holder: dict[str, ShardReader] = {}
        self._orphans: dict[str, float] = {}  # room -> when to drop this process's group unless a member came
        self._rechecks: dict[str, float] = {}  # room -> seconds after the first drop to drop it once more
        self._ctx = ReaderContext(parts.redis, parts.keys, parts.incarnation, self._ensure, members, timeout=timeout)
        parts.redis.topology.listeners.append(self._topology_changed)

    def start(self, deliver: Deliver, notify: Notify | None) -> None:
        self._ctx.deliver, self._ctx.notify = deliver, notify

    async def close(self) -> None:
        """Stop reading, then drop this process's groups (best-effort: a janitor does it otherwise)."""
        for reader in self._readers.values():
            await reader.stop()
        rooms = list(self.groups)
        self.groups.clear()
        for room in rooms:
            try:
                await self._drop(room)
            except BusUnavailable:
                return

    def holds(self, room: str) -> bool:
        return room in self.groups

    def rooms_by_shard(self) -> dict[Shard, list[RoomGroup]]:
        """Each reader's shard and the groups it reads now (every reader, those with no room too)."""
        return {reader.shard: list(reader.rooms.values()) for reader in self._readers.values()}

    # ---- subscribe and unsubscribe ----------------------------------------------

    async def subscribe(self, room: str) -> None:
        async with self._locks.hold(room):
            if room in self.groups:
                return
            self._orphans.pop(room, None)  # an earlier group of ours: carry on with it
            self._rechecks.pop(room, None)
            group = RoomGroup(room, self._keys.stream(room))
            reader = self._reader_for(group.key)
            self.groups[room], self._holder[room] = group, reader
            try:
                await reader.listen(group)
                await self._ensure_guarded(reader.shard, [group])
            except BaseException:
                self._forget(room)
                await reader.unlisten(room)
                self._drop_later(room)  # whatever part of it Redis did
                raise
        reader.ring(room)  # caught up by a first read: doorbells heard meanwhile only asked for one

    async def unsubscribe(self, room: str, still_listed: bool) -> None:
        """The last local member left; ``still_listed``: presence still has a share of the room here."""
        async with self._locks.hold(room):
            reader = self._forget(room)
            if reader is None:
                return
            await reader.unlisten(room)
            try:
                await self._drop(room, unlist=not still_listed)
            except BusUnavailable:
                self._drop_later(room)

    def _forget(self, room: str) -> ShardReader | None:
        self.groups.pop(room, None)
        reader = self._holder.pop(room, None)
        if reader is not None:
            reader.rooms.pop(room, None)
        return reader

    # ---- groups -------------------------------------------------------------------

    async def _ensure_guarded(self, shard: Shard, groups: list[RoomGroup]) -> None:
        try:
            await self._ensure(shard, groups)
        except REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis subscribe failed: {describe(exc)}") from exc

    async def _ensure(self, shard: Shard, groups: list[RoomGroup]) -> None:
        """Make sure each group exists (listed first, for the janitor), and learn where each stands."""
        if not groups:
            return
        name = self._incarnation()
        listing = self._keys.rooms_of(name)
        await self._redis.command(listing, "SADD", listing, *[g.name for g in groups], what="list")
        calls = [
            ([group.key, self._keys.born(group.name)], [name, group.born or "", group.cursor, self._ttl_ms])
            for group in groups
        ]
        replies = await shard.scripts(self._scripts.ensure_group, calls)
        for group, (status, last_delivered, born) in zip(groups, replies):
            group.grouped(status, last_delivered, born or None)
            if group.name not in self.groups:
                self._drop_later(group.name)  # unsubscribed while we re-created its group

    async def _drop(self, room: str, unlist: bool = True) -> None:
        name = self._incarnation()
        await self.drop_group(room, name)
        if unlist:
            listing = self._keys.rooms_of(name)
            await self._redis.command(listing, "SREM", listing, room, what="unlist")

    async def drop_group(self, room: str, group: str) -> None:
        """Destroy a group (this incarnation's, or a dead one's) on the room's stream."""
        stream, born = self._keys.stream(room), self._keys.born(room)
        await self._redis.script(stream, self._scripts.drop_group, [stream, born], [group], "drop group")

    def _drop_later(self, room: str) -> None:
        self._orphans[room] = DROP_LATER
        self._rechecks[room] = RECHECK

    async def drop_orphans(self, still_listed: Callable[[str], bool]) -> None:
        now = time.monotonic()
        for room, due in list(self._orphans.items()):
            if due > now:
                continue
            async with self._locks.hold(room):
                if room not in self.groups:
                    await self._drop(room, unlist=not still_listed(room))
                recheck = self._rechecks.pop(room, None)
                if recheck is None or room in self.groups:
                    self._orphans.pop(room, None)
                else:
                    self._orphans[room] = now + recheck

    # ---- readers and the topology -----------------------------------------------

    def _reader_for(self, key: str) -> ShardReader:
        address = self._redis.topology.address_for(key)
        reader = self._readers.get(address)
        if reader is None:
            reader = self._readers[address] = ShardReader(self._redis.topology.shard(address), self._ctx)
            reader.start()
        return reader

    def _topology_changed(self) -> None:
        """Rooms whose slot moved go to the reader of their new master; both readers start over."""
        moved: set[ShardReader] = set()
        for room, group in self.groups.items():
            holder, reader = self._holder[room], self._reader_for(group.key)
            if reader is not holder:
                holder.rooms.pop(room, None)
                reader.rooms[room] = group
                self._holder[room] = reader
                moved |= {holder, reader}
        masters = self._redis.topology.masters()
        for address, reader in list(self._readers.items()):
            if address not in masters and not reader.rooms:
                del self._readers[address]
                asyncio.ensure_future(reader.stop())
        health = self._redis.health
        health.forget(set(health.failing_parts() + health.short_of_memory()) - masters)
        for reader in moved:
            reader.restart()

    def mark_positions(self) -> None:
        """Each reader sets its groups to what this process delivered (``groups.mark_groups``)."""
        for reader in self._readers.values():
            reader.mark()

    def restart_all(self) -> None:
        """A new incarnation: every group is made again under its name, at the cursor."""
        for reader in self._readers.values():
            reader.restart()
