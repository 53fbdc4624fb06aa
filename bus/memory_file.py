"""What the in-process bus's data file holds, and reading it back (``--data-file``).

Four tables: the rooms' messages; their edits and deletions (``changes``,
keyed like messages by room and id, so the two read back in the room's one
order); each room's epoch and newest trimmed id; and the newest id handed
out. A fifth holds the bans and mutes in force (``sanctions``), written by
the same store (bus/memory_store.py) so one writer owns the file.
"""

from __future__ import annotations

import heapq
import sqlite3
from dataclasses import dataclass, field
from typing import Iterator

from bus.message import Change, Entry, IdKey, Message
from bus.moderation import Sanction

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    user TEXT NOT NULL, text TEXT NOT NULL, client_id TEXT,
    PRIMARY KEY (room, ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    room TEXT NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    user TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (room, ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY, born_ms INTEGER NOT NULL, born_seq INTEGER NOT NULL,
    deleted_ms INTEGER NOT NULL, deleted_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, ms INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sanctions (
    kind TEXT NOT NULL, room TEXT NOT NULL, user TEXT NOT NULL, until INTEGER,
    PRIMARY KEY (kind, room, user)
) WITHOUT ROWID;
"""
INSERT_MESSAGE = "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?)"
INSERT_CHANGE = "INSERT OR IGNORE INTO changes VALUES (?, ?, ?, ?, ?, ?, ?)"
ALL_ROOMS = ""  # a ban in every room: the key's room column cannot be NULL


@dataclass
class StoredRoom:
    """One room as the file holds it: its epoch, newest trimmed id and retained entries, oldest first."""

    born: IdKey
    max_deleted: IdKey
    messages: list[Entry] = field(default_factory=list)


@dataclass
class Loaded:
    rooms: dict[str, StoredRoom]
    last_id: IdKey


def message_row(m: Message) -> tuple[object, ...]:
    return (m.room, m.key.ms, m.key.seq, m.user, m.text, m.client_id)


def change_row(c: Change) -> tuple[object, ...]:
    return (c.room, c.key.ms, c.key.seq, c.user, c.kind, c.target, c.text)


def _entries(db: sqlite3.Connection) -> list[Entry]:
    """Every message and change, by room then id: the two tables merged into the rooms' one order."""
    messages: Iterator[Entry] = (
        Message(f"{ms}-{seq}", room, user, text, client_id)
        for room, ms, seq, user, text, client_id in db.execute(
            "SELECT room, ms, seq, user, text, client_id FROM messages ORDER BY room, ms, seq"
        )
    )
    changes: Iterator[Entry] = (
        Change(f"{ms}-{seq}", room, user, kind, target, text)
        for room, ms, seq, user, kind, target, text in db.execute(
            "SELECT room, ms, seq, user, kind, target, text FROM changes ORDER BY room, ms, seq"
        )
    )
    return list(heapq.merge(messages, changes, key=_order))


def _order(entry: Entry) -> tuple[str, IdKey]:
    return (entry.room, entry.key)


def load(db: sqlite3.Connection, retention: int) -> Loaded:
    """What the file holds, at most ``retention`` entries a room (as the bus keeps them)."""
    rooms: dict[str, StoredRoom] = {}
    for room, born_ms, born_seq, del_ms, del_seq in db.execute("SELECT * FROM rooms"):
        rooms[room] = StoredRoom(IdKey(born_ms, born_seq), IdKey(del_ms, del_seq))
    for entry in _entries(db):
        stored = rooms.setdefault(entry.room, StoredRoom(entry.key, IdKey(0, 0)))
        stored.messages.append(entry)
    for stored in rooms.values():
        if len(stored.messages) > retention:
            stored.max_deleted = stored.messages[-retention - 1].key
            del stored.messages[:-retention]
    last = db.execute("SELECT ms, seq FROM meta WHERE key = 'last_id'").fetchone()
    newest = max((stored.messages[-1].key for stored in rooms.values() if stored.messages), default=IdKey(0, 0))
    return Loaded(rooms, max(IdKey(*last) if last else IdKey(0, 0), newest))


def load_sanctions(db: sqlite3.Connection) -> list[Sanction]:
    rows = db.execute("SELECT kind, room, user, until FROM sanctions")
    return [Sanction(kind, None if room == ALL_ROOMS else room, user, until) for kind, room, user, until in rows]


def write_sanctions(db: sqlite3.Connection, sanctions: list[Sanction]) -> None:
    """Replace the table's rows (inside the caller's transaction): a few rows, the ones in force."""
    db.execute("DELETE FROM sanctions")
    db.executemany(
        "INSERT OR REPLACE INTO sanctions VALUES (?, ?, ?, ?)",
        [(s.kind, ALL_ROOMS if s.room is None else s.room, s.user, s.until) for s in sanctions],
    )
