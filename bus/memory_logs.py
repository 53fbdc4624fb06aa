"""The in-process bus's room logs, bounded three ways (README, "Memory").

- ``retention``: messages (and edits, deletions) a room keeps, the oldest trimmed first;
- ``history_bytes``: the UTF-8 bytes of the texts a room keeps, the oldest trimmed
  first, the newest always kept (a room of long messages holds fewer of them);
- ``budget``: the bytes of text kept over every room. Past it the room written
  to least recently loses its whole history first, as if its TTL had passed:
  a later ``since`` into it is not ``complete``. Rooms are kept in the order
  they were last written to, so finding that room costs nothing.

Each trim and each drop is O(1) per entry it removes, so a publish costs O(1)
amortised whatever the bounds. The texts are what a client controls; the rest
of an entry (ids, names, the objects) is a bounded overhead per message.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from bus.message import Entry, IdKey, completeness

NO_ID = IdKey(0, 0)


def text_bytes(entry: Entry) -> int:
    """The UTF-8 size of an entry's text; ``len`` alone for ASCII (no copy: the common case)."""
    text = entry.text
    return len(text) if text.isascii() else len(text.encode())


@dataclass
class RoomLog:
    messages: deque[Entry] = field(default_factory=deque)  # messages and changes (bus/changes.py)
    born: IdKey | None = None
    max_deleted: IdKey = NO_ID
    size: int = 0  # text bytes of ``messages``

    def complete(self, since: IdKey | None, replayed: int) -> bool:
        """Whether a replay of ``replayed`` entries after ``since`` vouches that nothing is missing."""
        return completeness(
            since, born=self.born, max_deleted=self.max_deleted, retained=len(self.messages), replayed=replayed
        )


class RoomLogs:
    """Every room's retained log. ``on_trimmed(room, newest trimmed id)`` and ``on_dropped(room)`` tell a data file."""

    def __init__(
        self,
        retention: int,
        history_bytes: int = 0,
        budget: int = 0,
        on_trimmed: Callable[[str, IdKey], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
    ) -> None:
        self._retention = retention
        self._history_bytes = history_bytes
        self._budget = budget
        self._on_trimmed = on_trimmed
        self._on_dropped = on_dropped
        self._logs: OrderedDict[str, RoomLog] = OrderedDict()  # least recently written first
        self.total = 0  # text bytes over every room
        self.dropped = 0  # rooms whose history the budget dropped

    def __len__(self) -> int:
        return len(self._logs)

    def get(self, room: str) -> RoomLog | None:
        return self._logs.get(room)

    def rooms(self) -> Iterator[tuple[str, RoomLog]]:
        return iter(list(self._logs.items()))

    def restore(self, room: str, log: RoomLog) -> None:
        """A log read back from the data file; call in the order the rooms were last written to."""
        log.size = sum(text_bytes(entry) for entry in log.messages)
        self._logs[room] = log
        self.total += log.size
        self._trim(room, log)
        self._keep_budget()

    def append(self, entry: Entry) -> None:
        room = entry.room
        log = self._logs.get(room)
        if log is None:
            log = self._logs[room] = RoomLog()
        elif self._budget:
            self._logs.move_to_end(room)
        if log.born is None:
            log.born = entry.key
        log.messages.append(entry)
        size = text_bytes(entry)
        log.size += size
        self.total += size
        if len(log.messages) > self._retention or (self._history_bytes and log.size > self._history_bytes):
            self._trim(room, log)
        if self._budget and self.total > self._budget:
            self._keep_budget()

    def drop(self, room: str) -> None:
        """Forget a room altogether (its TTL passed, or the budget needs its bytes)."""
        log = self._logs.pop(room, None)
        if log is not None:
            self.total -= log.size
            if self._on_dropped is not None:
                self._on_dropped(room)

    def _trim(self, room: str, log: RoomLog) -> None:
        messages, trimmed = log.messages, False
        limit = self._history_bytes or log.size
        while len(messages) > 1 and (len(messages) > self._retention or log.size > limit):
            gone = messages.popleft()
            size = text_bytes(gone)
            log.size -= size
            self.total -= size
            log.max_deleted, trimmed = gone.key, True
        if trimmed and self._on_trimmed is not None:
            self._on_trimmed(room, log.max_deleted)

    def _keep_budget(self) -> None:
        """Drop the least recently written rooms until the total fits; the room just written to stays."""
        while self._budget and self.total > self._budget and len(self._logs) > 1:
            self.drop(next(iter(self._logs)))
            self.dropped += 1
