"""The storage-and-delivery interface the RoomBus drives, and its errors.

A backend stores each room's messages as an ordered log and delivers new
entries of the rooms this node subscribed to through one callback. Two
implementations pass the same protocol tests (tests/test_protocol.py and others): ``memory.MemoryBackend`` (one
process, the embedded default) and ``bus.redis.RedisBroker`` (Redis streams,
one consumer group per node).

Delivery semantics, which the RoomBus relies on:

- ``publish`` returns only once the message is stored; every later
  ``history`` read sees it. It raises ``BusUnavailable`` when the message could
  not be stored, and then nobody receives it.
- For each subscribed room, ``deliver`` is called with that room's messages
  in id order, each at most once per node while the node runs. A node that
  restarts under the same id may see entries again (at-least-once); the
  RoomBus drops anything not newer than what a member already has.
- Everything published after ``subscribe(room)`` returns is delivered.

Presence (docs/protocol.md, "Joining" and "Server to client") is best-effort and apart from that order:

- ``set_connections`` records how many connections a user has to a room
  through this node; the backend sums them over nodes. When a user's total
  goes from 0 to more, or back to 0, every node's ``notify`` gets a ``join``
  or ``leave`` Notice for the room; so do dead nodes' users (after
  ``presence_timeout``). ``announce`` spreads a ``typing`` Notice the same way.
  Notices reach subscribed rooms only, at most once, in the order the backend
  decided them; a notice lost in an outage is made good by a ``presence``
  Notice (the whole list) once the node can hear the room again.
- ``set_connections``, ``members`` and ``announce`` raise ``BusUnavailable``
  when the backend is down; the backend keeps what ``set_connections`` was
  told and records it once it is back.
"""

from __future__ import annotations

from typing import Callable, Protocol

from bus.message import Change, ChangeDraft, Draft, Entry, History, IdKey, Notice, Older, Published

Deliver = Callable[[list[Entry]], None]
Notify = Callable[[Notice], None]


class BusError(Exception):
    """Base of the bus's errors."""


class RateLimited(BusError):
    """The user's message budget in the room, shared by every process, is spent: the message was not stored."""


class BusUnavailable(BusError):
    """The backend cannot store or read right now (Redis down, timeout)."""


class ChangeRefused(BusError):
    """An edit or deletion the room's log refuses: ``code`` is ``not_found`` or ``not_allowed``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Backend(Protocol):
    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        """Connect and begin delivering subscribed rooms' new messages to ``deliver``, notices to ``notify``."""

    async def close(self) -> None:
        """Stop delivering and release connections; pending publishes fail."""

    async def publish(self, draft: Draft) -> Published:
        """Store a message and return it with its id.

        A draft whose ``client_id`` this user already had stored in this room
        within the resend window is not stored again: the original message is
        returned with ``duplicate=True``. A backend shared by processes may
        keep each user's message budget in a room over all of them: past it,
        ``RateLimited`` (checked after the resend, so a resend still gets its
        original).
        """

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        """Retained messages as they are now, oldest first: every one after ``since``, or the last ``limit``.

        With ``since``, the edits and deletions after it of messages up to
        ``since`` come too, in their places: the reader has those messages.
        """

    async def older(self, room: str, before: IdKey, limit: int) -> Older:
        """Up to ``limit`` retained messages just before ``before``, as they are now, oldest first."""

    async def change(self, draft: ChangeDraft) -> Change:
        """Store an edit or a deletion in the room's order; it is delivered like a message.

        Raises ChangeRefused (``not_found``: no such message retained, or
        deleted; ``not_allowed``: another author's, or an edit past its
        window) and BusUnavailable.
        """

    async def subscribe(self, room: str) -> None:
        """Deliver this room's messages published from now on."""

    async def unsubscribe(self, room: str) -> None:
        """Stop delivering this room's messages."""

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        """This node now has ``connections`` (0: none) open to the room for the user; join/leave follow."""

    async def members(self, room: str) -> list[tuple[str, int]]:
        """Everyone in the room on every node: (user, connections), sorted by user."""

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` rooms with members on any node, named after ``after``, in name order, with user counts."""

    async def announce(self, notice: Notice, once_per: float) -> bool:
        """Notify the room's members on every node; False (not sent) when the same
        user's notice of that kind went out on another node less than ``once_per`` seconds ago."""

    def unavailable_reason(self) -> str | None:
        """None when publishing works, else a short reason for /readyz."""
