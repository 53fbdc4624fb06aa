"""Reads that callers asking at the same time share: one history read for a room's joiners, not one each.

After a process dies, its members reconnect to the others all at once, each
room's members within the same second, most resuming from the same id. Each
join reads the room's history and who is in it; read one by one, that is a
Redis round trip and a decoded reply per joiner.

A shared read must not have started before its caller asked. A join seats
its member first (messages published from then on wait in the seat) and
reads afterwards; a message published between an older read and the seat
would be in neither. So a read in flight is never joined: callers arriving
while one flies wait for the next, which starts as the one in flight ends,
once, for all of them. At most one read per key is in flight, and under a
storm a room's joiners pay one read per round trip together.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class SharedReads(Generic[T]):
    """``read(key, start)``: ``start()``'s result, shared with the callers of the same key that asked meanwhile.

    The key names the read: every ``start`` given with one key must read the same thing.
    """

    def __init__(self) -> None:
        self._flying: dict[Hashable, asyncio.Task[T]] = {}
        self._waiting: dict[Hashable, asyncio.Future[T]] = {}

    def read(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        flying = self._flying.get(key)
        if flying is None:
            return asyncio.shield(self._launch(key, start))
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = asyncio.get_running_loop().create_future()
            waiting.add_done_callback(_retrieve)  # its waiters may all have given up
            flying.add_done_callback(lambda _: self._next(key, start))
        # Shielded: a caller that gives up does not cancel the others' read.
        return asyncio.shield(waiting)

    def _launch(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        # A fresh context: the read serves many connections, and must not log as the first one's.
        task = asyncio.get_running_loop().create_task(_run(start), context=contextvars.Context())
        self._flying[key] = task
        task.add_done_callback(lambda _: self._landed(key, task))
        return task

    def _landed(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._flying.get(key) is task:
            del self._flying[key]

    def _next(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> None:
        """The read in flight ended: start the one its waiters share."""
        waiting = self._waiting.pop(key)
        self._launch(key, start).add_done_callback(lambda task: _settle(waiting, task))


async def _run(start: Callable[[], Awaitable[T]]) -> T:
    return await start()


def _settle(waiting: asyncio.Future[Any], task: asyncio.Task[Any]) -> None:
    if waiting.cancelled():
        return
    if task.cancelled():
        waiting.cancel()
    elif task.exception() is not None:
        waiting.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        waiting.set_result(task.result())


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
