"""Join and leave notices coalesced per room, so that churn cannot multiply frames to every member.

Each join or leave would otherwise be one frame to every member of the
room: one client joining and leaving hundreds of times a second (a new guest
name each time) sent tens of thousands of frames a second to a room of a few
hundred. Here a notice in a quiet room goes out at once and opens a window
of ``every`` seconds (0.1); what arrives within it is reduced to each user's
last notice (a user who came and went: one ``leave``), sent when the window
ends, and the next window opens. So a room gets at most one update per
window:

- nothing arrived: nothing, and the room is quiet again;
- up to ``SINGLE_FRAMES`` users: their last ``join``/``leave`` frames, as
  without churn (the frames of docs/protocol.md, the common case);
- more: one ``presence`` frame, the whole list, which the page shows as is.

Each user's last notice is sent even when it undoes their first (a join and
a leave within the window is a ``leave``, not nothing): a list a member was
given (at its own join, or by an earlier window) may have been read while
that user was joining, and must not keep them. Joins and leaves only set
what a member shows, so one too many changes nothing.

A list is read from the backend; while it is being read the room's next
window waits for it, so what follows the list is newer than the list.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Awaitable, Callable

from bus.backend import BusUnavailable
from bus.message import Notice

COALESCE_EVERY = 0.1  # seconds: at most one presence update per room per this
SINGLE_FRAMES = 3  # up to this many users changed in a window go out as join/leave frames

Members = Callable[[str], Awaitable[list[tuple[str, int]]]]


class _Window:
    __slots__ = ("handle", "last")

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self.handle = handle
        self.last: dict[str, Notice] = {}  # user -> their last join or leave in the window

    def add(self, notice: Notice) -> None:
        self.last.pop(notice.user, None)  # sent in the order of each user's last notice
        self.last[notice.user] = notice


class NoticeBatcher:
    """Hands join and leave notices to ``send``, coalesced per room (see the module doc)."""

    def __init__(self, send: Callable[[Notice], None], members: Members, every: float = COALESCE_EVERY) -> None:
        self._send = send
        self._members = members
        self._every = every
        self._windows: dict[str, _Window] = {}
        self._listing: dict[str, asyncio.Task[None]] = {}  # rooms whose list is being read

    def offer(self, notice: Notice) -> None:
        """The backend's notices: joins and leaves coalesced, the rest handed on at once."""
        if notice.kind not in ("join", "leave") or self._every <= 0:  # 0: not coalesced
            self._send(notice)
            return
        window = self._windows.get(notice.room)
        if window is None:
            self._send(notice)  # a quiet room: at once
            self._open(notice.room)
        else:
            window.add(notice)

    def close(self) -> None:
        for window in self._windows.values():
            window.handle.cancel()
        self._windows.clear()
        for task in self._listing.values():
            task.cancel()

    def _open(self, room: str, window: _Window | None = None) -> None:
        handle = asyncio.get_running_loop().call_later(self._every, self._end, room)
        if window is None:
            window = _Window(handle)
        window.handle = handle
        self._windows[room] = window

    def _end(self, room: str) -> None:
        window = self._windows.pop(room)
        if room in self._listing:
            self._open(room, window)  # after the list being read, not before it
            return
        notices = list(window.last.values())
        if not notices:
            return  # quiet again: the next notice goes out at once
        self._open(room)
        if len(notices) <= SINGLE_FRAMES:
            for notice in notices:
                self._send(notice)
            return
        loop = asyncio.get_running_loop()  # a fresh context: not the connection's that opened the window
        task = loop.create_task(self._send_list(room, notices), context=contextvars.Context())
        self._listing[room] = task
        task.add_done_callback(lambda _: self._listing.pop(room, None))

    async def _send_list(self, room: str, notices: list[Notice]) -> None:
        try:
            members = dict(await self._members(room))
        except BusUnavailable:
            for notice in notices:  # best-effort, as presence is: the frames, then
                self._send(notice)
            return
        self._send(Notice.presence(room, members))


__all__ = ["COALESCE_EVERY", "NoticeBatcher", "SINGLE_FRAMES"]
