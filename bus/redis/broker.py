"""The Redis bus behind the Backend interface: a small facade over the package's parts.

    publish.py        publish (Lua: XADD, trim, TTL, doorbell; WAIT) and history
    changes.py        edits and deletions (Lua: check, XADD, doorbell) and older pages
    consumer.py       which rooms this process consumes; shard_reader.py reads them per shard
    presence.py       member counts and typing notices (room_parts.py: what it shares with the consumer)
    liveness.py       the one heartbeat and janitor loop
    status.py         the processes' status records and their lag (server.py status, the admin page)
    client.py         one Redis or a cluster: topology, health, the call policy, the runner
    keys.py           every key name; scripts/*.lua

Guarantees (the Backend protocol's): ``publish`` returns once the message
is stored (and, with ``wait_replicas``, replicated), else raises
BusUnavailable; per room, ``deliver`` gets entries in stream order, each at
most once per run of this process, and everything stored after ``subscribe``
returns. Presence is best-effort and never holds up a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable, Coroutine

from bus.backend import BusUnavailable, Deliver, Notify
from bus.keyed_locks import KeyedLocks
from bus.message import Change, ChangeDraft, Draft, History, IdKey, Notice, Older, Published
from bus.redis.changes import RoomChanges
from bus.redis.client import REDIS_ERRORS, Health, Redis, Topology
from bus.redis.consumer import Consumer
from bus.redis.keys import Keys
from bus.redis.lag import LagReport, sample_lag
from bus.redis.liveness import Identity, Liveness
from bus.redis.moderation import RedisModeration
from bus.redis.options import RedisOptions
from bus.redis.presence import Presence
from bus.redis.publish import Publisher
from bus.redis.room_list import rooms_with_members
from bus.redis.room_parts import RoomParts
from bus.redis.scripts import Scripts
from bus.redis.status import ClusterReader, write_record


class RedisBroker:
    def __init__(
        self,
        options: RedisOptions,
        on_recovered: Callable[[], None] | None = None,
        on_out_of_memory: Callable[[], None] | None = None,
    ) -> None:
        """``on_recovered``: called each time the bus is back after an outage; ``on_out_of_memory``: each
        time Redis refuses a write for lack of memory (metrics)."""
        timeout = options.timeout or None  # 0: no limit
        topology = Topology(options.url, cluster=options.cluster, timeout=timeout, client_name=options.node_id)
        self._redis = Redis(topology, Health(on_recovered, on_out_of_memory))
        self.keys = keys = Keys(options.prefix)
        self._scripts = scripts = Scripts(topology.shard(topology.address_for(keys.alive)).client)
        self.identity = Identity(options.node_id)
        locks = KeyedLocks()  # one room's subscription and presence listing change in order

        def incarnation() -> str:
            return self.identity.current

        self._publisher = Publisher(self._redis, keys, scripts, options)
        self._changes = RoomChanges(self._redis, keys, scripts, options)
        # What presence and the consumer share: one room's listing and subscription change under one lock.
        shared = RoomParts(redis=self._redis, keys=keys, scripts=scripts, incarnation=incarnation, locks=locks)
        self._presence = Presence(shared, consumed=lambda room: self._consumer.holds(room))
        self._consumer = Consumer(
            shared, members=self._presence.members, timeout=timeout, room_ttl_ms=int(options.room_ttl * 1000)
        )
        self._liveness = Liveness(
            redis=self._redis,
            keys=keys,
            scripts=scripts,
            identity=self.identity,
            consumer=self._consumer,
            presence=self._presence,
            presence_timeout=options.presence_timeout,
        )
        self._timeout = timeout
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # ---- life cycle -----------------------------------------------------------------

    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        self._consumer.start(deliver, notify)
        with contextlib.suppress(*REDIS_ERRORS):
            await self._redis.topology.refresh()  # a cluster's slot map, before the first command
        self._tasks = [asyncio.create_task(self._liveness.run(), name="bus-liveness")]
        # Wait for the first heartbeat so /readyz is right from the start. A
        # Redis that is down is not fatal: the loop keeps trying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._liveness.first_tick.wait(), 3 * (self._timeout or 5.0))

    async def close(self) -> None:
        """Stop the loops (nothing reads or acks after this), drop our groups, leave, close connections."""
        if self._closed:
            return
        self._closed = self._liveness.runner.closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._consumer.close()
        if self._redis.health.reason is None:
            with contextlib.suppress(BusUnavailable):
                await self._presence.clear()  # this process's members leave now, not after the timeout
        await self._redis.topology.aclose()

    def unavailable_reason(self) -> str | None:
        return "bus closed" if self._closed else self._redis.health.reason

    @property
    def recoveries(self) -> int:
        """How many outages ended (for a reconnects metric)."""
        return self._redis.health.recoveries

    def failing_shards(self) -> int:
        """Redis masters this process cannot reach now (an outage, or a failover under way)."""
        return len(self._redis.health.failing_parts())

    async def lag(self) -> LagReport:
        """How far this process's readers, and every process's groups on its rooms, are behind (bus/redis/lag.py)."""
        if self._closed:
            return LagReport()
        self._consumer.mark_positions()  # for the next sample, here and on every other process
        rooms = self._consumer.rooms_by_shard()
        return await sample_lag(rooms, self._scripts.lag, self.identity.current, self._timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("bus closed")

    # ---- the Backend interface --------------------------------------------------------

    def publish(self, draft: Draft) -> Coroutine[Any, Any, Published]:
        # A plain function handing on the publisher's coroutine: one frame less on every message's way.
        self._check_open()
        return self._publisher.publish(draft)

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        self._check_open()
        return await self._publisher.history(room, since, limit)

    async def older(self, room: str, before: IdKey, limit: int) -> Older:
        self._check_open()
        return await self._changes.older(room, before, limit)

    async def change(self, draft: ChangeDraft) -> Change:
        self._check_open()
        return await self._changes.change(draft)

    async def subscribe(self, room: str) -> None:
        self._check_open()
        await self._consumer.subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        if not self._closed:
            await self._consumer.unsubscribe(room, still_listed=self._presence.holds(room))

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        self._check_open()
        await self._presence.set_connections(room, user, connections)

    async def members(self, room: str) -> list[tuple[str, int]]:
        self._check_open()
        return await self._presence.members(room)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        self._check_open()
        return await self._presence.announce(notice, once_per)

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        self._check_open()
        return await rooms_with_members(self._redis, self.keys, after, limit)

    def moderation(self) -> RedisModeration:
        """The bans, mutes and disconnects of this deployment (bus/redis/moderation.py), on this bus's Redis."""
        return RedisModeration(self._redis, self.keys, self._timeout)

    # ---- status records (bus/redis/status.py) --------------------------------------

    async def write_status(self, record: dict[str, Any], interval: float) -> None:
        """Mark how far this process has delivered (its groups), and store its record (bus/redis/status.py)."""
        self._check_open()
        self._consumer.mark_positions()
        await write_record(self._redis, self.keys, self.identity.current, record, interval)

    def cluster_reader(self) -> ClusterReader:
        return ClusterReader(self._redis, self.keys)
