"""One timer for the pings of every room socket of a process, instead of Tornado's task per socket.

Tornado pings each WebSocket from a coroutine Task of its own that sleeps
between pings: a Task, its coroutine, a sleep future and a timer handle per
idle connection (bench/RESULTS.md, "Measurements formerly in code comments"). Here sockets wait in the slot
of a wheel (one set per tick) until their next step, and one timer walks the
due slots: a ping ``interval`` after open, the close (reason ``ping timed
out``, as Tornado's) when no pong came within ``timeout``, the next ping
``interval`` after the last one. Steps may come up to one tick late.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

MAX_TICK = 1.0  # seconds: how late a ping or a ping's deadline may be, at most


class Pinged(Protocol):
    """A socket the wheel pings; the two attributes are the wheel's, kept on the socket to cost no map entry."""

    ping_slot: int  # the slot it waits in; -1 when in none
    ping_awaiting: bool  # a ping went out and its deadline is the slot

    def send_ping(self) -> bool:
        """Send a ping and forget any earlier pong; False when the socket is gone."""

    def pong_received(self) -> bool:
        """Whether a pong came since the last ping."""

    def ping_timed_out(self) -> None:
        """Close the socket: it answered no ping within the timeout."""


class PingWheel:
    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        # As Tornado: no longer than the interval, and 0 means pings never time out.
        self.timeout = min(timeout, interval)
        self.tick = min(MAX_TICK, interval / 4) if interval > 0 else MAX_TICK
        self._slots: dict[int, set[Pinged]] = {}
        self._next = 0  # the first slot not yet walked
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def __len__(self) -> int:
        return sum(len(sockets) for sockets in self._slots.values())

    def stop(self) -> None:
        """Stop the timer and forget every socket (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()

    def add(self, socket: Pinged) -> None:
        """Ping ``socket`` from ``interval`` seconds on, until ``discard``."""
        socket.ping_awaiting = False
        self._place(socket, self.interval)

    def discard(self, socket: Pinged) -> None:
        sockets = self._slots.get(socket.ping_slot)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._slots[socket.ping_slot]
        socket.ping_slot = -1

    def _now_slot(self) -> int:
        return math.floor(asyncio.get_running_loop().time() / self.tick)

    def _place(self, socket: Pinged, delay: float) -> None:
        now = self._now_slot()
        if self._timer is None:  # an idle wheel: nothing before now is waiting
            self._next = now
        # The slot after the one ``delay`` falls in: a step is never early,
        # and at most two ticks late.
        slot = max(now + math.ceil(delay / self.tick) + 1, self._next)
        socket.ping_slot = slot
        self._slots.setdefault(slot, set()).add(socket)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._walk)

    def _walk(self) -> None:
        now = self._now_slot()
        while self._next <= now:
            for socket in self._slots.pop(self._next, ()):
                socket.ping_slot = -1
                self._step(socket)  # places it again, in a later slot
            self._next += 1
        self._timer = asyncio.get_running_loop().call_later(self.tick, self._walk) if self._slots else None

    def _step(self, socket: Pinged) -> None:
        if socket.ping_awaiting:
            if self.timeout > 0 and not socket.pong_received():
                socket.ping_timed_out()
                return
            rest = self.interval - self.timeout
            if rest > 0:  # the next ping is due interval after the last one
                socket.ping_awaiting = False
                self._place(socket, rest)
                return
        if not socket.send_ping():
            return
        socket.ping_awaiting = self.timeout > 0
        self._place(socket, self.timeout if socket.ping_awaiting else self.interval)
