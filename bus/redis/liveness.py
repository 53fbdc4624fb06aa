"""The one liveness loop: this process's heartbeat, and the janitor for processes that died.

A process is known by its *incarnation*, ``<node id>/<token>``, new at each
start. Every tick it refreshes its heartbeat in one sorted set (Redis clock)
and reads the others'. An incarnation silent for longer than
``presence_timeout`` is dead for good (``beat.lua`` will not refresh it),
and so is any other incarnation of this node id (an earlier run: its
connections died with it). For each dead one, whichever process sees it
first destroys its consumer groups and takes its counts off the member lists
(publishing the leaves) in every room it listed, then forgets it.

A process that finds itself dead (paused too long, or Redis lost the set)
starts a new incarnation: its readers make their groups again under the new
name at their cursors and presence writes its shares again; only then is
the old incarnation buried like any other, so its users stay in their rooms
throughout.

The same tick writes presence again when a write failed, drops groups left
behind (a failed unsubscribe), and, while a shard is failing, asks it whether
it is back (or, refusing writes for lack of memory, whether it has room
again); during an outage it ticks faster.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import structlog
from redis.asyncio import Redis as RedisClient

from bus.backend import BusUnavailable
from bus.redis.client import Redis, Runner, describe
from bus.redis.consumer import Consumer
from bus.redis.health import MEMORY, PRESENCE, has_room
from bus.redis.keys import Keys
from bus.redis.presence import Presence
from bus.redis.scripts import Scripts

log = structlog.get_logger("chat.bus")
OUTAGE_TICK = 0.25  # seconds between ticks while something is failing


class Identity:
    def __init__(self, node: str) -> None:
        self.node = node
        self.current = self._new()
        self.registered = False  # the current incarnation's heartbeat is recorded

    def _new(self) -> str:
        return f"{self.node}/{secrets.token_hex(4)}"

    def renew(self) -> str:
        old, self.current, self.registered = self.current, self._new(), False
        return old

    def is_earlier_run(self, incarnation: str) -> bool:
        return incarnation != self.current and incarnation.rpartition("/")[0] == self.node


class Liveness:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        identity: Identity,
        consumer: Consumer,
        presence: Presence,
        presence_timeout: float,
    ) -> None:
        self.first_tick = asyncio.Event()
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._identity = identity
        self._consumer = consumer
        self._presence = presence
        self._timeout_ms = int(presence_timeout * 1000)  # 0: dead processes are never reaped
        self.every = min(5.0, max(0.05, presence_timeout / 4)) if presence_timeout else 5.0
        self.runner = Runner("liveness", self._failed)

    async def run(self) -> None:
        await self.runner.run_forever(self._loop)

    async def _failed(self, exc: BaseException) -> None:
        self.first_tick.set()  # a Redis that is down is not fatal at start: the loop keeps trying
        # The heartbeat is presence's too: its shares are written again once
        # Redis answers (it may have come back empty).
        self._presence.dirty = True
        self._redis.health.failed(PRESENCE, describe(exc))

    async def _loop(self) -> None:
        while not self.runner.closed:
            await self.tick()
            self.first_tick.set()
            self.runner.healthy()
            await asyncio.sleep(self.every if self._redis.health.reason is None else min(self.every, OUTAGE_TICK))

    async def tick(self) -> None:
        alive, now_ms, others = await self._beat()
        if not alive:
            old = self._identity.renew()
            log.warning("presence.restarted", old=old, new=self._identity.current)
            self._consumer.restart_all()
            self._presence.new_incarnation()
            alive, now_ms, others = await self._beat()
        await self._probe_failing_shards()
        if self._presence.dirty:
            try:
                await self._presence.resync()
            except BusUnavailable:
                pass  # reported to the health's presence part; the next tick tries again
        for incarnation, score in others:
            if self._dead(incarnation, score, now_ms) and not self._presence.dirty:
                await self._bury(incarnation, score)
        await self._consumer.drop_orphans(self._presence.holds)

    async def _beat(self) -> tuple[bool, int, list[tuple[str, float]]]:
        identity, key = self._identity, self._keys.alive
        args: list[Any] = [identity.current, self._timeout_ms, "0" if identity.registered else "1"]

        async def beat(client: RedisClient) -> Any:
            return await self._scripts.beat(keys=[key], args=args, client=client)

        alive, now_ms, flat = await self._redis.call(key, beat, "heartbeat")
        if alive:
            identity.registered = True
        pairs = [(str(name), float(score)) for name, score in zip(flat[0::2], flat[1::2])]
        return bool(alive), int(now_ms), [(name, score) for name, score in pairs if name != identity.current]

    def _dead(self, incarnation: str, score: float, now_ms: int) -> bool:
        if self._identity.is_earlier_run(incarnation):
            return True
        return self._timeout_ms > 0 and now_ms - score > self._timeout_ms

    async def _probe_failing_shards(self) -> None:
        topology = self._redis.topology
        for address in self._redis.health.failing_parts():
            if address not in topology.masters():
                continue
            try:
                await topology.shard(address).client.ping()
            except Exception as exc:  # still down: the readers and callers report it
                log.debug("bus.probe_failed", shard=address, reason=describe(exc))
                continue
            self._redis.health.ok(address)
        for address in self._redis.health.short_of_memory():
            try:
                info = await topology.shard(address).client.info("memory")
            except Exception as exc:  # cannot say: the next tick asks again
                log.debug("bus.probe_failed", shard=address, reason=describe(exc))
                continue
            if has_room(info):
                self._redis.health.ok(MEMORY + address)

    async def _bury(self, incarnation: str, score: float) -> None:
        """Destroy a dead incarnation's groups and take its counts off, room by room; then forget it."""
        listing = self._keys.rooms_of(incarnation)
        rooms = sorted(str(room) for room in await self._redis.call(listing, lambda c: c.smembers(listing), "janitor"))
        for room in rooms:
            await self._consumer.drop_group(room, incarnation)
            await self._presence.remove(incarnation, room)
        alive = self._keys.alive
        args: list[Any] = [incarnation, f"{score:.0f}", *rooms]

        async def forget(client: RedisClient) -> Any:
            return await self._scripts.forget(keys=[alive, listing], args=args, client=client)

        forgotten = await self._redis.call(alive, forget, "janitor")
        log.info("bus.node_removed", dead_node=incarnation, rooms=len(rooms), forgotten=bool(forgotten))
