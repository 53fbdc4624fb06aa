"""One asyncio lock per key (a room), kept only while someone holds or awaits it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator


class KeyedLocks:
    """Work on one key does not interleave; keys nobody uses cost nothing."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
