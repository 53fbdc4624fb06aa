"""The storage-and-delivery interface the RoomBus drives, and its errors.

A backend stores each room's messages as an ordered log and delivers new
entries of the rooms this node subscribed to through one callback. Two
implementations pass the same contract tests: ``memory.MemoryBackend`` (one
process, the embedded default) and ``streams.StreamsBackend`` (Redis streams,
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
"""

from __future__ import annotations

from typing import Callable, Protocol

from bus.message import Draft, History, IdKey, Message, Published

Deliver = Callable[[list[Message]], None]


class BusError(Exception):
    """Base of the bus's errors."""


class BusUnavailable(BusError):
    """The backend cannot store or read right now (Redis down, timeout)."""


class Backend(Protocol):
    async def start(self, deliver: Deliver) -> None:
        """Connect and begin delivering subscribed rooms' new messages to ``deliver``."""

    async def close(self) -> None:
        """Stop delivering and release connections; pending publishes fail."""

    async def publish(self, draft: Draft) -> Published:
        """Store a message and return it with its id.

        A draft whose ``client_id`` this user already had stored in this room
        within the resend window is not stored again: the original message is
        returned with ``duplicate=True``.
        """

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        """Retained messages, oldest first: every one after ``since``, or the last ``limit``."""

    async def subscribe(self, room: str) -> None:
        """Deliver this room's messages published from now on."""

    async def unsubscribe(self, room: str) -> None:
        """Stop delivering this room's messages."""

    def unavailable_reason(self) -> str | None:
        """None when publishing works, else a short reason for /readyz."""
