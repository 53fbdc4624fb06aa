"""What the room hub's unit tests share: members that record frames, the real in-process
backend noting what the hub asked of it, and a runner for one scenario on a fresh hub.

No sockets: a member is anything with ``send_frame``. The backend is the real
MemoryBackend (the one a single process serves with), so join, history,
fan-out and presence run their production path, only faster to observe. The
few failure tests replace one backend method with one that raises
BusUnavailable, the error a Redis outage gives (the outage itself is shown
end to end by tests/test_redis_bus.py against a stopped redis-server).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bus.backend import Deliver, Notify
from bus.memory import MemoryBackend
from bus.message import Draft, IdKey, Message, Notice
from bus.room_bus import RoomBus

Frame = dict[str, Any]


class Member:
    """Records every frame the hub hands it, decoded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[Frame] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(json.loads(frame))

    def kinds(self) -> list[str]:
        return [frame["type"] for frame in self.frames]

    def texts(self) -> list[str]:
        return [frame["message"] for frame in self.frames if frame["type"] == "message"]

    def take(self) -> list[Frame]:
        frames, self.frames = self.frames, []
        return frames


JOINER = contextvars.ContextVar("joiner", default="")  # context a connection binds (its conn, user)


class Backend(MemoryBackend):
    """The in-process backend, keeping its callbacks so a test can deliver again (at-least-once),
    and noting what the hub asked of it."""

    deliver: Deliver
    notify: Notify

    def __init__(self, retention: int, resend_window: float) -> None:
        super().__init__(retention, resend_window)
        self.subscribed: list[tuple[str, str]] = []  # (room, the joiner context seen by subscribe)
        self.unsubscribed: list[str] = []
        self.once_per: list[float] = []

    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        assert notify is not None
        self.deliver, self.notify = deliver, notify
        await super().start(deliver, notify)

    async def subscribe(self, room: str) -> None:
        self.subscribed.append((room, JOINER.get()))
        await super().subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        self.unsubscribed.append(room)
        await super().unsubscribe(room)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        self.once_per.append(once_per)
        return await super().announce(notice, once_per)


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float]] = []

    def delivered(self, room: str, recipients: int, age_seconds: float) -> None:
        self.calls.append((room, recipients, age_seconds))


Scenario = Callable[[RoomBus, Backend], Awaitable[None]]


def run(scenario: Scenario, history: int = 50, retention: int = 100, observer: Observer | None = None) -> None:
    async def main() -> None:
        backend = Backend(retention=retention, resend_window=600)
        bus = RoomBus(backend, history, observer=observer, coalesce=0)  # notices at once (test_floods.py coalesces)
        await bus.start()
        try:
            await scenario(bus, backend)
        finally:
            await bus.close()

    asyncio.run(asyncio.wait_for(main(), 5))


async def settle() -> None:
    """Let the backend's scheduled deliveries (call_soon) run: a few loop turns, no time."""
    for _ in range(5):
        await asyncio.sleep(0)


async def enter(bus: RoomBus, room: str, member: Member, since: IdKey | None = None) -> list[Message]:
    """Join and go live as the room socket does; the replayed history."""
    history = await bus.join(room, member, member.name, since)
    bus.go_live(room, member)
    return [m for m in history.messages if isinstance(m, Message)]


async def say(bus: RoomBus, room: str, user: str, text: str, client_id: str | None = None) -> Message:
    return (await bus.publish(Draft(room, user, text, client_id))).message


def presence(*members: tuple[str, int]) -> Frame:
    return {"type": "presence", "members": [{"user": user, "connections": n} for user, n in members]}
