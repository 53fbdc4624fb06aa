"""Bans, mutes and disconnects ordered by the host application: what every process enforces.

A sanction is a ban (from one room, or from every room: ``room`` None) or a
mute (in one room) of one user, until a time or until lifted. The user is
the string the host application knows them by: the display name, or in
token mode the user id.

Every process keeps a mirror of the sanctions in force (``Sanctions``), so
the checks at a join and at each message are dict lookups, never a round
trip. A store (``MemoryModeration`` here, ``bus.redis.moderation`` on Redis)
writes a change, applies it to its own mirror at once, and tells every
process; each applies it to its mirror and, for a disconnect, calls the
``on_disconnect`` it was started with. What the store holds outlives the
process (Redis); the in-process store lives as long as its process, unless
given a ``SanctionFile`` (the hook for a data file).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

KINDS = ("ban", "mute")
MAX_SECONDS = 366 * 24 * 3600  # the longest sanction with an end; longer ones are "until lifted"

OnDisconnect = Callable[[str, "str | None"], None]  # (user, room or None: every room)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Sanction:
    kind: str  # "ban" or "mute"
    room: str | None  # None: every room (bans only)
    user: str
    until: int | None  # ms since the epoch; None: until lifted

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.room, self.user)

    def in_force(self, at_ms: int) -> bool:
        return self.until is None or self.until > at_ms

    def as_json(self) -> dict[str, object]:
        return {"user": self.user, "room": self.room, "until": self.until}


class Sanctions:
    """The sanctions in force, by (kind, room, user); expired ones are dropped as they are met."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str | None, str], Sanction] = {}

    def put(self, sanction: Sanction) -> None:
        self._held[sanction.key] = sanction

    def drop(self, kind: str, room: str | None, user: str) -> bool:
        return self._held.pop((kind, room, user), None) is not None

    def replace_all(self, sanctions: Iterable[Sanction]) -> None:
        self._held = {sanction.key: sanction for sanction in sanctions}

    def _holds(self, key: tuple[str, str | None, str]) -> bool:
        sanction = self._held.get(key)
        if sanction is None:
            return False
        if sanction.in_force(now_ms()):
            return True
        del self._held[key]
        return False

    def banned(self, room: str, user: str) -> bool:
        return self._holds(("ban", room, user)) or self._holds(("ban", None, user))

    def muted(self, room: str, user: str) -> bool:
        return self._holds(("mute", room, user))

    def all(self) -> list[Sanction]:
        at = now_ms()
        return [s for s in self._held.values() if s.in_force(at)]

    def listing(self, kind: str, room: str | None) -> list[Sanction]:
        """A room's sanctions of a kind, bans in every room included; ``room`` None: those in every room only."""
        at = now_ms()
        found = [
            s for s in self._held.values() if s.kind == kind and s.in_force(at) and (s.room is None or s.room == room)
        ]
        return sorted(found, key=lambda s: (s.room is not None, s.room or "", s.user))


class Moderation(Protocol):
    """The store of sanctions every process enforces, and the disconnect signal every process hears."""

    async def start(self, on_disconnect: OnDisconnect) -> None:
        """Load the sanctions in force and start hearing changes and disconnects."""

    async def close(self) -> None: ...

    def banned(self, room: str, user: str) -> bool:
        """From the mirror: no round trip."""

    def muted(self, room: str, user: str) -> bool:
        """From the mirror: no round trip."""

    async def impose(self, sanction: Sanction) -> None:
        """Store a sanction (replacing one of the same kind, room and user); raises BusUnavailable."""

    async def lift(self, kind: str, room: str | None, user: str) -> bool:
        """Remove a sanction; False when none was in force. Raises BusUnavailable."""

    def listing(self, kind: str, room: str | None) -> list[Sanction]: ...

    async def disconnect(self, user: str, room: str | None) -> None:
        """Tell every process to close the user's connections (to ``room``, or to every room)."""


class SanctionFile(Protocol):
    """Where the in-process store keeps its sanctions across restarts (a data file), when it has one."""

    def load(self) -> list[Sanction]: ...

    async def save(self, sanctions: list[Sanction]) -> None:
        """Replace what the file holds, once written; raises BusUnavailable."""


class MemoryModeration:
    """One process: the mirror is the store; a disconnect is heard on the next loop turn."""

    def __init__(self, file: SanctionFile | None = None) -> None:
        self._sanctions = Sanctions()
        self._file = file
        self._on_disconnect: OnDisconnect | None = None

    async def start(self, on_disconnect: OnDisconnect) -> None:
        self._on_disconnect = on_disconnect
        if self._file is not None:
            self._sanctions.replace_all(s for s in self._file.load() if s.in_force(now_ms()))

    async def close(self) -> None:
        self._on_disconnect = None

    def banned(self, room: str, user: str) -> bool:
        return self._sanctions.banned(room, user)

    def muted(self, room: str, user: str) -> bool:
        return self._sanctions.muted(room, user)

    async def impose(self, sanction: Sanction) -> None:
        self._sanctions.put(sanction)
        await self._save()

    async def lift(self, kind: str, room: str | None, user: str) -> bool:
        lifted = self._sanctions.drop(kind, room, user)
        await self._save()
        return lifted

    def listing(self, kind: str, room: str | None) -> list[Sanction]:
        return self._sanctions.listing(kind, room)

    async def disconnect(self, user: str, room: str | None) -> None:
        if self._on_disconnect is not None:
            asyncio.get_running_loop().call_soon(self._on_disconnect, user, room)

    async def _save(self) -> None:
        if self._file is not None:
            await self._file.save(self._sanctions.all())
