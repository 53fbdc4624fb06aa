"""Connections to one Redis or to a Redis Cluster, and the one way the bus calls them.

A *shard* is one Redis master: the single Redis, or each master of a
cluster. Every key of a room hashes to one slot (``keys.py``), so each
command, script and pipeline of the bus goes to exactly one shard, and a read
of many rooms is a pipeline per shard, never a cross-slot command.

- ``Shard`` (``shard.py``): one master's connections, the hot paths' wires.
- ``Topology``: which shard serves a key. One Redis: always the same shard.
  A cluster: the slot map read with ``CLUSTER SLOTS`` from any node that
  answers, read again after a ``MOVED``, ``ASK``, ``CLUSTERDOWN`` or a lost
  connection (a failover), and whoever listens (the consumer) is told.
- ``Health`` (``health.py``): the bus's one outage tracker.
- ``Redis.call_shard`` (and ``script``, ``command``, ``call`` over it): the
  one retry policy. A redirection or a dropped connection refreshes the
  topology (or drops the shard's idle connections, which a restarted Redis
  closed) and the call is tried once more when it is idempotent. A publish
  without ``client_id`` is not: had Redis run it before the connection
  broke, it would be stored twice. A Redis error caused by the
  request itself is no outage and is not reported as one; a write refused
  for lack of memory (``OOM``) is, apart (``health.py``).
- ``run_forever``: the one runner loop: run a step, and on failure report it,
  back off exponentially and run it again.

Every command is bounded by ``timeout``: a wire's one timer, or the pool's
socket timeout, never an ``asyncio.wait_for`` around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Awaitable, Callable, Sequence, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit, urlunsplit

import structlog
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as RedisClient
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bus.backend import BusUnavailable
from bus.redis.health import PRESENCE, Health, out_of_memory
from bus.redis.shard import LOST_CONNECTION, REDIS_ERRORS, Shard

log = structlog.get_logger("chat.bus")

T = TypeVar("T")
# The pool serves the liveness loop only (the message and join paths use wires).
POOL_SIZE = 16
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def redirected(exc: BaseException) -> bool:
    """A reply that says the slot lives elsewhere or the cluster is changing: read the topology again."""
    return isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in (
        "MOVED",
        "ASK",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "READONLY",
        "LOADING",
        "MASTERDOWN",
    )


# ---- the runner loop ------------------------------------------------------------


class Restart(Exception):
    """Not a failure: the step's work changed under it (rooms moved); run it again at once."""


class Runner:
    """Run a step forever: on failure report it, back off, run it again. ``healthy`` resets the backoff."""

    def __init__(self, name: str, on_failure: Callable[[BaseException], Awaitable[None]]) -> None:
        self.name = name
        self.closed = False
        self._on_failure = on_failure
        self._backoff = BACKOFF_MIN

    def healthy(self) -> None:
        self._backoff = BACKOFF_MIN

    async def run_forever(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self.closed:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Restart:
                continue
            except (BusUnavailable, *REDIS_ERRORS) as exc:  # reported by the call that failed, or here
                await self._report(exc)
            except Exception as exc:  # a bug must not stop the loop for good
                log.exception(f"bus.{self.name}_failed")
                await self._report(exc)
            if self.closed:
                return
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _report(self, exc: BaseException) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._on_failure(exc)


# ---- shards and the topology -----------------------------------------------------


def _node_url(url: str, address: str, cluster: bool) -> str:
    """The URL with its host and port replaced (credentials kept); a cluster has no database number."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit((parts.scheme, netloc, "" if cluster else parts.path, parts.query, ""))


class Topology:
    """Which shard serves each key; for a cluster, kept from ``CLUSTER SLOTS``."""

    def __init__(self, url: str, *, cluster: bool, timeout: float | None, client_name: str) -> None:
        self.cluster = cluster
        self._url = url
        self._timeout = timeout
        self._client_name = "chat-" + re.sub(r"[^\w.:-]", "_", client_name)  # CLIENT LIST shows who is who
        seed = urlsplit(url)
        self._seed = f"{seed.hostname or '127.0.0.1'}:{seed.port or 6379}"
        self._shards: dict[str, Shard] = {}
        self._slots: list[tuple[int, int, str]] = []  # (first, last, address), sorted
        self._refreshing: asyncio.Lock | None = None
        self.listeners: list[Callable[[], None]] = []  # told after the slot map changed

    def _make_shard(self, address: str) -> Shard:
        url = _node_url(self._url, address, self.cluster)
        common: dict[str, Any] = dict(
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            client_name=self._client_name,
            # No retries inside redis-py: a publish it sent again after a lost
            # connection could be stored twice, and a retry's backoff would hold
            # the subscribed connection; Redis.call and the Runner decide.
            retry=Retry(NoBackoff(), 0),
        )
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=self._timeout, decode_responses=True, **common
        )
        return Shard(address, RedisClient.from_pool(pool), url, self.cluster, self._timeout, self._client_name)

    def shard(self, address: str) -> Shard:
        if address not in self._shards:
            self._shards[address] = self._make_shard(address)
        return self._shards[address]

    def address_for(self, key: str) -> str:
        if not self.cluster:
            return self._seed
        slot = key_slot(key.encode())
        for first, last, address in self._slots:
            if first <= slot <= last:
                return address
        return self._seed  # no map yet: the seed answers with MOVED and the map is read

    def shard_for(self, key: str) -> Shard:
        return self.shard(self.address_for(key))

    def masters(self) -> set[str]:
        return {address for _, _, address in self._slots} if self.cluster else {self._seed}

    async def refresh(self) -> bool:
        """Read the slot map again (a cluster); True when it changed. Raises when no node answers."""
        if not self.cluster:
            return False
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            slots = await self._read_slots()
            if slots == self._slots:
                return False
            self._slots = slots
        for address in [a for a in self._shards if a not in self.masters()]:
            await self._shards.pop(address).aclose()
        for listener in self.listeners:
            listener()
        return True

    async def _read_slots(self) -> list[tuple[int, int, str]]:
        last_error: BaseException = RedisConnectionError("no cluster node to ask")
        candidates = [*self.masters(), *[a for a in self._shards], self._seed]
        for address in dict.fromkeys(candidates):
            try:
                reply = await self.shard(address).client.execute_command("CLUSTER SLOTS")
            except REDIS_ERRORS as exc:
                last_error = exc
                continue
            return sorted(_parse_slots(reply))
        raise last_error

    async def aclose(self) -> None:
        for shard in self._shards.values():
            await shard.aclose()
        self._shards.clear()


def _parse_slots(reply: Any) -> list[tuple[int, int, str]]:
    """``CLUSTER SLOTS`` as redis-py gives it: a dict {(first, last): {'primary': (host, port)}} or the raw list."""
    if isinstance(reply, dict):
        return [(int(a), int(b), f"{v['primary'][0]}:{v['primary'][1]}") for (a, b), v in reply.items()]
    found = []
    for entry in reply:
        host, port = entry[2][0], entry[2][1]
        host = host.decode() if isinstance(host, bytes) else host
        found.append((int(entry[0]), int(entry[1]), f"{host}:{int(port)}"))
    return found


# ---- the one call policy ---------------------------------------------------------


class Policy(TypedDict, total=False):
    """``call_shard``'s keywords, for the calls that pass them on."""

    idempotent: bool
    part: str | None


class Redis:
    """The topology, the health, and ``call``: what every part of the Redis bus uses to reach Redis."""

    def __init__(self, topology: Topology, health: Health) -> None:
        self.topology = topology
        self.health = health

    async def call(
        self, key: str, command: Callable[[RedisClient], Awaitable[T]], what: str, **policy: Unpack[Policy]
    ) -> T:
        """Run ``command`` with the pooled client of the shard that serves ``key`` (see ``call_shard``)."""
        return await self.call_shard(key, lambda shard: command(shard.client), what, **policy)

    async def script(
        self,
        key: str,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        what: str,
        *,
        idempotent: bool = True,
        part: str | None = None,
    ) -> Any:
        """``script`` on the shard that serves ``key``, on its command wire, under ``call_shard``'s policy."""

        async def run(shard: Shard) -> Any:
            return await shard.script(script, keys, args)

        return await self.call_shard(key, run, what, idempotent=idempotent, part=part)

    async def command(self, key: str, *args: Any, what: str, part: str | None = None) -> Any:
        """One idempotent command on the shard that serves ``key``, on its command wire."""

        async def run(shard: Shard) -> Any:
            return await shard.command(*args)

        return await self.call_shard(key, run, what, part=part)

    async def call_shard(
        self,
        key: str,
        command: Callable[[Shard], Awaitable[T]],
        what: str,
        *,
        idempotent: bool = True,
        part: str | None = None,
    ) -> T:
        """Run ``command`` on the shard that serves ``key``; failures become BusUnavailable.

        ``part`` is the health part to report to (default: the shard).
        """
        for attempt in (1, 2):
            shard = self.topology.shard_for(key)
            report_as = part or shard.address
            try:
                result = await command(shard)
            except ResponseError as exc:
                if redirected(exc) and attempt == 1:  # nothing ran: always safe to try again
                    await self._refresh()
                    continue
                if out_of_memory(exc):  # the shard answers, but takes no write until it has room
                    self.health.refused_for_memory(shard.address, describe(exc))
                if part is not None or redirected(exc):
                    self.health.failed(report_as, describe(exc))
                raise BusUnavailable(f"redis {what} failed: {describe(exc)}") from exc
            except REDIS_ERRORS as exc:
                if attempt == 1 and isinstance(exc, LOST_CONNECTION):
                    await shard.drop_idle()
                    await self._refresh()
                    if idempotent:
                        continue
                self.health.failed(report_as, describe(exc))
                raise BusUnavailable(f"redis {what} failed: {describe(exc)}") from exc
            if part != PRESENCE:
                # One presence call working says nothing of the rooms it did
                # not touch: presence is healed by a whole resync (liveness).
                self.health.ok(report_as)
            return result
        raise AssertionError("unreachable")

    async def _refresh(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self.topology.refresh()
