"""The open room sockets of a process, so shutdown can close them all and wait for them."""

from __future__ import annotations

import asyncio
import itertools
from typing import Protocol

from handlers.pings import PingWheel


class ClosableSocket(Protocol):
    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Begin closing with this code and reason."""


class SocketRegistry:
    """The open room sockets of this process, so shutdown can close them all and wait."""

    def __init__(self, pings: PingWheel | None = None) -> None:
        self.sockets: set[ClosableSocket] = set()
        # The pings of the process's room sockets; None leaves them to Tornado (a task per socket).
        self.pings = pings
        self._ids = itertools.count(1)
        self._empty = asyncio.Event()
        self._empty.set()

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, socket: ClosableSocket) -> None:
        self.sockets.add(socket)
        self._empty.clear()

    def discard(self, socket: ClosableSocket) -> None:
        self.sockets.discard(socket)
        if not self.sockets:
            self._empty.set()

    def close_all(self, code: int, reason: str) -> None:
        for socket in list(self.sockets):
            socket.close(code, reason)

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every socket has closed; False if some are still open at ``timeout``."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
