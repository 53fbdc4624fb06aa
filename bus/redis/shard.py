"""One Redis master as the bus sees it: the wires of the hot paths, and a small pool for the rest.

Everything on the message and join paths goes over *wires* (``wire.py``):
one pipelined connection each for publishes, reads and other commands, made
on first use and again after one is lost, and one subscribed connection per
reader session. A burst of joins shares them and never waits for a pooled
connection. A script missing on the shard (``NOSCRIPT``: a restarted or
failed-over master) is loaded and run again: it had not run.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from redis.asyncio import Redis as RedisClient
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.redis.wire import Wire

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


@dataclass(eq=False)
class Shard:
    """One Redis master: a pool for the occasional command, and pipelined wires for the hot path.

    ``wire("publish")`` and ``wire("read")`` are one connection each, made on first use
    and again after one is lost; a subscribed connection is a new wire each session
    (``open_wire``). Publishes have their own so that a ``WAIT`` never holds up a read.
    """

    address: str
    client: RedisClient
    url: str
    cluster: bool
    timeout: float | None
    client_name: str
    _wires: dict[str, Wire] = field(default_factory=dict)
    _opening: dict[str, asyncio.Future[Wire]] = field(default_factory=dict)

    def live_wire(self, role: str) -> Wire | None:
        """The role's wire if it is open now (no await: the publish path asks once per message)."""
        wire = self._wires.get(role)
        return wire if wire is not None and not wire.closed else None

    async def wire(self, role: str, slack: float = 0.0) -> Wire:
        """The role's wire; ``slack``: seconds its commands may take beyond the timeout (a WAIT's own)."""
        wire = self.live_wire(role)
        if wire is not None:
            return wire
        opening = self._opening.get(role)
        if opening is None:  # one connect for every caller of this moment
            opening = self._opening[role] = asyncio.ensure_future(self.open_wire(slack))
            opening.add_done_callback(lambda done: self._opened(role, done))
        return await asyncio.shield(opening)

    def _opened(self, role: str, done: asyncio.Future[Wire]) -> None:
        self._opening.pop(role, None)
        if not done.cancelled() and done.exception() is None:
            self._wires[role] = done.result()

    async def open_wire(self, slack: float = 0.0) -> Wire:
        wire = await Wire.open(self.url, timeout=self.timeout, client_name=self.client_name, select_db=not self.cluster)
        if wire.timeout is not None:
            wire.timeout += slack
        return wire

    async def command(self, *args: Any) -> Any:
        """One command on the shard's command wire, pipelined with every other caller's."""
        return await (await self.wire("command")).execute(*args)

    async def scripts(self, script: AsyncScript, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """A script run once per (keys, args), in one write; a script missing here is loaded, then run.

        Each reply in order; an error reply is raised (the first one).
        """
        wire = await self.wire("command")
        replies = await self._evalshas(wire, script, calls)
        missing = [k for k, reply in enumerate(replies) if noscript(reply)]
        if missing:  # those did not run: running them now is safe
            await wire.execute("SCRIPT", "LOAD", script.script)
            again = await self._evalshas(wire, script, [calls[k] for k in missing])
            for k, reply in zip(missing, again):
                replies[k] = reply
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    @staticmethod
    async def _evalshas(
        wire: Wire, script: AsyncScript, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        sent = [wire.send("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        return list(await asyncio.gather(*sent, return_exceptions=True))

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        [reply] = await self.scripts(script, [(keys, args)])
        return reply

    async def drop_idle(self) -> None:
        """A Redis that restarted closed every connection; redis-py learns it only by using each."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        for opening in self._opening.values():
            opening.cancel()
        for wire in self._wires.values():
            wire.close()
        self._wires.clear()
        await self.client.aclose()


def noscript(reply: Any) -> bool:
    """The script is not loaded on this shard (a restarted or failed-over master): it did not run."""
    return isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")
