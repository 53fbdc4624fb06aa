"""RoomBus: the local members of each room, join history, and fan-out.

The RoomBus sits between the handlers (which speak WebSocket) and one backend
(which stores and orders messages). It knows nothing of Tornado: a member is
anything with ``send_frame``.

What it guarantees to each member of a room:

- Order: messages arrive in id order, the one order the backend gives the
  room, identical for every member on every process.
- Join: ``join`` registers the member before it reads history, so a message
  published while the join is in progress is buffered; ``go_live`` then
  sends only what is newer than the history read. Nothing is missed, nothing
  is sent twice.
- Duplicates: the backend delivers at least once (a restarted node may see
  entries again); a message not newer than what a member already has is
  dropped here, so members see each message once.
- Fan-out never waits for a member: each frame is encoded once per message
  and handed to every member's non-blocking ``send_frame``; a member that
  cannot keep up drops itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Protocol

from bus.backend import Backend
from bus.message import ZERO_ID, Draft, History, IdKey, Message, Published, id_key


class Member(Protocol):
    def send_frame(self, frame: bytes) -> None:
        """Queue one text frame (UTF-8 JSON) without waiting; never raises."""


class FanoutObserver(Protocol):
    def delivered(self, room: str, recipients: int, age_seconds: float) -> None:
        """Called once per message fanned out on this node."""


@dataclass(eq=False)
class _Seat:
    """One member's place in a room: buffered until live, then fed in order."""

    member: Member
    after: IdKey = field(default_factory=lambda: id_key(ZERO_ID))
    live: bool = False
    buffered: list[Message] = field(default_factory=list)

    def offer(self, message: Message, frame: bytes) -> bool:
        if not self.live:
            self.buffered.append(message)
            return False
        if message.key <= self.after:
            return False
        self.after = message.key
        self.member.send_frame(frame)
        return True


class RoomBus:
    def __init__(self, backend: Backend, history: int, observer: FanoutObserver | None = None) -> None:
        self._backend = backend
        self._history = history
        self._observer = observer
        self._rooms: dict[str, dict[Member, _Seat]] = {}
        self._subscribing: dict[str, asyncio.Task[None]] = {}

    @property
    def backend(self) -> Backend:
        return self._backend

    async def start(self) -> None:
        await self._backend.start(self._fan_out)

    async def close(self) -> None:
        await self._backend.close()

    def room_count(self) -> int:
        return len(self._rooms)

    def unavailable_reason(self) -> str | None:
        return self._backend.unavailable_reason()

    async def publish(self, draft: Draft) -> Published:
        """Store a message; it reaches members through the backend, like everyone's."""
        return await self._backend.publish(draft)

    async def join(self, room: str, member: Member, since: IdKey | None) -> History:
        """Seat a member and read the history to replay to it.

        The caller sends the history and its ``ready`` frame, then calls
        ``go_live``; live messages wait in the member's seat until then.
        Raises BusUnavailable (the member is not seated) when the backend fails.
        """
        seat = _Seat(member)
        self._rooms.setdefault(room, {})[member] = seat
        try:
            await self._ensure_subscribed(room)
            history = await self._backend.history(room, since, self._history)
        except BaseException:
            await self.leave(room, member)
            raise
        seat.after = id_key(history.last_id) if history.last_id else id_key(ZERO_ID)
        return history

    def go_live(self, room: str, member: Member) -> None:
        """Send what arrived during the join (newer than its history), then go live."""
        seat = self._rooms.get(room, {}).get(member)
        if seat is None:
            return
        seat.live = True
        buffered, seat.buffered = seat.buffered, []
        for message in buffered:
            seat.offer(message, message.frame())

    async def leave(self, room: str, member: Member) -> None:
        """Unseat a member; the last one out stops this node's delivery of the room."""
        seats = self._rooms.get(room)
        if seats is None or seats.pop(member, None) is None or seats:
            return
        del self._rooms[room]
        self._subscribing.pop(room, None)
        await self._backend.unsubscribe(room)

    async def _ensure_subscribed(self, room: str) -> None:
        # Every joiner of a room awaits the same subscription, so nobody reads
        # history before this node's delivery of the room has started.
        task = self._subscribing.get(room)
        if task is None or (task.done() and task.exception() is not None):
            # A fresh context: the task outlives the joiner whose connection
            # context (conn, user) would otherwise stick to the backend's logs.
            task = asyncio.get_running_loop().create_task(
                self._backend.subscribe(room), context=contextvars.Context())
            self._subscribing[room] = task
        await asyncio.shield(task)

    def _fan_out(self, messages: list[Message]) -> None:
        """Backend callback: hand each message to its room's members, in order."""
        for message in messages:
            seats = self._rooms.get(message.room)
            if not seats:
                continue
            frame = message.frame()
            recipients = 0
            for seat in list(seats.values()):
                recipients += seat.offer(message, frame)
            if self._observer is not None:
                self._observer.delivered(message.room, recipients, time.time() - message.ts / 1000)
