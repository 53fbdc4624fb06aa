"""RoomBus: the local members of each room, join history, fan-out, presence.

Between the handlers (which speak WebSocket) and one backend (which stores and
orders messages); it knows nothing of Tornado: a member is anything with
``send_frame``. What it guarantees to each member of a room:

- Order: messages arrive in id order, the one order the backend gives the
  room, identical for every member on every process.
- Join: ``join`` registers the member before it reads history (a message published meanwhile is
  buffered); ``go_live`` sends only what is newer than that: nothing missed or doubled.
- Duplicates: the backend delivers at least once (a restarted node may see
  entries again); a message not newer than what a member already has is
  dropped here, so members see each message once.
- Fan-out never waits for a member: each frame is encoded once per message and handed to
  every member's non-blocking ``send_frame``; a member that cannot keep up drops itself.

Presence (who is in the room, join, leave, typing) rides beside the messages and never holds them up:
``go_live`` sends a ``presence`` frame (everyone in the room, on every node)
right after the caller's ``ready``; ``join``/``leave``/``typing`` notices
follow, joins and leaves coalesced under churn (bus/presence_batch.py). The
snapshot is read after this node hears the room's notices, and notices
arriving meanwhile wait in the seat, so the list a member builds from the
snapshot plus the notices ends where the room is. Notices about a user
are not sent to that user's own connections. Presence is best-effort: a
backend failure in it never fails a join, a leave or a message.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Coroutine, Protocol

from bus.backend import Backend, BusUnavailable
from bus.message import (
    ZERO_ID,
    Change,
    ChangeDraft,
    Draft,
    Entry,
    History,
    IdKey,
    Message,
    Notice,
    Older,
    Published,
    id_key,
)
from bus.presence_batch import COALESCE_EVERY, NoticeBatcher

TYPING_EVERY = 1.0  # seconds: at most one typing notice per user per room


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
    user: str
    after: IdKey = field(default_factory=lambda: id_key(ZERO_ID))
    live: bool = False
    buffered: list[Entry | bytes] = field(default_factory=list)  # messages and changes, and encoded notices
    presence: bytes | None = None  # the snapshot read at join, sent first by go_live

    def offer(self, message: Entry, frame: bytes) -> bool:
        if not self.live:
            self.buffered.append(message)
            return False
        if message.key <= self.after:
            return False
        self.after = message.key
        self.member.send_frame(frame)
        return True

    def notify(self, notice: Notice, frame: bytes) -> None:
        if notice.user == self.user:
            return  # their own join, leave or typing: the others' business
        if not self.live:
            self.buffered.append(frame)
            return
        self.member.send_frame(frame)


@dataclass(eq=False)
class _Room:
    seats: dict[Member, _Seat] = field(default_factory=dict)
    connections: Counter[str] = field(default_factory=Counter)  # user -> seats on this node
    typed: dict[str, float] = field(default_factory=dict)  # user -> monotonic time of their last typing notice


class RoomBus:
    def __init__(
        self, backend: Backend, history: int, observer: FanoutObserver | None = None, coalesce: float = COALESCE_EVERY
    ) -> None:
        self._backend = backend
        self._history = history
        self._observer = observer
        self._rooms: dict[str, _Room] = {}
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[asyncio.Future[None]] = set()
        self._batches = NoticeBatcher(self._notify, backend.members, coalesce)  # joins and leaves coalesced

    @property
    def backend(self) -> Backend:
        return self._backend

    async def start(self) -> None:
        await self._backend.start(self._fan_out, self._batches.offer)

    async def close(self, grace: float = 5.0) -> None:
        """Let the leaves under way finish (within ``grace`` s), then close the backend."""
        if self._leaving:
            await asyncio.wait(list(self._leaving), timeout=grace)
        self._batches.close()
        await self._backend.close()

    def room_count(self) -> int:
        return len(self._rooms)

    def busiest(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` rooms with the most members' connections on this node, with that number (status records)."""
        return heapq.nlargest(n, ((room, len(state.seats)) for room, state in self._rooms.items()), key=lambda x: x[1])

    def has_members_here(self, room: str) -> bool:
        return room in self._rooms

    def unavailable_reason(self) -> str | None:
        return self._backend.unavailable_reason()

    def publish(self, draft: Draft) -> Coroutine[Any, Any, Published]:
        """Store a message; it reaches members through the backend (whose coroutine is handed on: a frame less)."""
        return self._backend.publish(draft)

    async def change(self, draft: ChangeDraft) -> Change:
        """Store an edit or deletion (bus/changes.py), delivered in the room's order like a message.

        Who may change what (``draft.author``, ``draft.window``) the backend checks as it stores it.
        """
        return await self._backend.change(draft)

    async def older(self, room: str, before: IdKey, limit: int) -> Older:
        return await self._backend.older(room, before, limit)

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        return await self._backend.history(room, since, limit)

    async def members(self, room: str) -> list[tuple[str, int]]:  # as a presence frame lists them
        return list(self._with_local(Notice.presence(room, dict(await self._backend.members(room)))).members)

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        return await self._backend.rooms(after, limit)

    async def join(self, room: str, member: Member, user: str, since: IdKey | None) -> History:
        """Seat a member and read the history to replay to it, and who is in the room.

        The caller sends the history and its ``ready`` frame, then calls
        ``go_live``; live messages and notices wait in the member's seat until
        then. Raises BusUnavailable (the member is not seated) when the
        backend fails to subscribe or read history; presence failures do not.
        """
        seat = _Seat(member, user)
        state = self._rooms.setdefault(room, _Room())
        state.seats[member] = seat
        state.connections[user] += 1
        try:
            await self._ensure_subscribed(room)
            history, _ = await asyncio.gather(
                self._backend.history(room, since, self._history), self._register(room, user)
            )
        except BaseException:
            await self.leave(room, member)
            raise
        seat.after = id_key(history.last_id) if history.last_id else id_key(ZERO_ID)
        # Read after this node hears the room's notices (subscribed above) and
        # after this connection counts: the list includes the joiner, and any
        # change after the read arrives as a notice.
        seat.presence = await self._snapshot(room)
        return history

    def go_live(self, room: str, member: Member) -> None:
        """Send the presence list, then what arrived during the join (messages newer than its history)."""
        seat = self._seat(room, member)
        if seat is None:
            return
        seat.live = True
        if seat.presence is not None:
            seat.member.send_frame(seat.presence)
            seat.presence = None
        buffered, seat.buffered = seat.buffered, []
        for item in buffered:
            if isinstance(item, bytes):
                seat.member.send_frame(item)
            else:
                seat.offer(item, item.frame())

    def leave_soon(self, room: str, member: Member) -> None:
        """``leave`` in a task of its own (a closing connection cannot wait), which ``close`` waits for."""
        task = asyncio.ensure_future(self.leave(room, member))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def leave(self, room: str, member: Member) -> None:
        """Unseat a member; the last one out stops this node's delivery of the room."""
        state = self._rooms.get(room)
        seat = state.seats.pop(member, None) if state is not None else None
        if state is None or seat is None:
            return
        state.connections[seat.user] -= 1
        if state.connections[seat.user] <= 0:
            del state.connections[seat.user]
            state.typed.pop(seat.user, None)
        if not state.seats:
            del self._rooms[room]
            self._subscribing.pop(room, None)
            # Before any await: a join that comes meanwhile subscribes anew.
            await self._backend.unsubscribe(room)
        await self._register(room, seat.user)

    async def typing(self, room: str, member: Member) -> None:
        """Tell the room's other members that this member's user is typing.

        At most one notice per user per room per TYPING_EVERY (on every node
        together, where the backend can tell); extras are dropped silently.
        """
        state = self._rooms.get(room)
        seat = state.seats.get(member) if state is not None else None
        if state is None or seat is None or not seat.live:
            return
        now = time.monotonic()
        if now - state.typed.get(seat.user, -TYPING_EVERY) < TYPING_EVERY:
            return
        try:
            sent = await self._backend.announce(Notice(room, "typing", seat.user), TYPING_EVERY)
        except BusUnavailable:
            return  # best-effort; the backend has logged the outage
        if sent:
            state.typed[seat.user] = now

    def _seat(self, room: str, member: Member) -> _Seat | None:
        state = self._rooms.get(room)
        return state.seats.get(member) if state is not None else None

    def _local_members(self, room: str) -> Counter[str]:
        state = self._rooms.get(room)
        return state.connections if state is not None else Counter()

    async def _register(self, room: str, user: str) -> None:
        """Tell the backend this node's count of the user's connections, as it is when this runs."""
        try:
            await self._backend.set_connections(room, user, self._local_members(room)[user])
        except BusUnavailable:
            pass  # best-effort: the backend records it once it is back

    async def _snapshot(self, room: str) -> bytes:
        try:
            members = dict(await self._backend.members(room))
        except BusUnavailable:
            members = {}
        return self._with_local(Notice.presence(room, members)).frame()

    def _with_local(self, notice: Notice) -> Notice:
        """The list with this node's own members in it, at least as many times as they are here.

        A backend that lost its presence records (a Redis restarted empty)
        gets them back only once this node has re-registered; its members
        must not vanish from their own list meanwhile.
        """
        members = dict(notice.members)
        for user, count in self._local_members(notice.room).items():
            members[user] = max(members.get(user, 0), count)
        return Notice.presence(notice.room, members)

    async def _ensure_subscribed(self, room: str) -> None:
        # Every joiner of a room awaits the same subscription, so nobody reads
        # history before this node's delivery of the room has started.
        task = self._subscribing.get(room)
        if task is None or (task.done() and task.exception() is not None):
            # A fresh context: the task outlives the joiner whose connection
            # context (conn, user) would otherwise stick to the backend's logs.
            task = asyncio.get_running_loop().create_task(self._backend.subscribe(room), context=contextvars.Context())
            self._subscribing[room] = task
        await asyncio.shield(task)

    def _fan_out(self, messages: list[Entry]) -> None:
        """Backend callback: hand each message to its room's members, in order."""
        for message in messages:
            state = self._rooms.get(message.room)
            if state is None or not state.seats:
                continue
            frame = message.frame()
            recipients = 0
            for seat in list(state.seats.values()):
                recipients += seat.offer(message, frame)
            if self._observer is not None and isinstance(message, Message):
                self._observer.delivered(message.room, recipients, time.time() - message.ts / 1000)

    def _notify(self, notice: Notice) -> None:
        """Hand a notice to its room's members (encoded once); the backend's, through ``_batches``."""
        state = self._rooms.get(notice.room)
        if state is None:
            return
        if notice.kind == "presence":
            notice = self._with_local(notice)
        frame = notice.frame()
        for seat in list(state.seats.values()):
            seat.notify(notice, frame)
