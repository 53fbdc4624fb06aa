"""The in-process bus's history on disk: one SQLite file (``--data-file``).

The in-process bus keeps serving from memory; this file only makes what it
holds survive a restart: every room's retained messages, its epoch (the first
id it ever held) and its newest trimmed id, and the newest id handed out, so
that after a restart ids keep increasing and a resume across it is complete.

Writes never run on the event loop: the messages stored in one loop turn go
to a single worker thread as one transaction (WAL journal, ``synchronous=NORMAL``:
a commit survives the process dying; a power cut may lose the last commits).
``save`` returns only once its message is committed, so an accepted message
is on disk before anyone is told of it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bus.message import IdKey, Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    user TEXT NOT NULL, text TEXT NOT NULL, client_id TEXT,
    PRIMARY KEY (room, ms, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY, born_ms INTEGER NOT NULL, born_seq INTEGER NOT NULL,
    deleted_ms INTEGER NOT NULL, deleted_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, ms INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
"""


class StoreError(Exception):
    """The data file cannot be opened or written; the message says which file and why."""


@dataclass
class StoredRoom:
    """One room as the file holds it: its epoch, newest trimmed id and retained messages, oldest first."""

    born: IdKey
    max_deleted: IdKey
    messages: list[Message] = field(default_factory=list)


@dataclass
class Loaded:
    rooms: dict[str, StoredRoom]
    last_id: IdKey


@dataclass
class _Batch:
    messages: list[Message] = field(default_factory=list)
    born: dict[str, IdKey] = field(default_factory=dict)  # rooms created in this batch
    trimmed: dict[str, IdKey] = field(default_factory=dict)  # room -> newest id trimmed away
    dropped: set[str] = field(default_factory=set)  # rooms freed altogether
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class MessageStore:
    """A SQLite file written from one worker thread, one transaction per event-loop turn."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-store")
        self._batch: _Batch | None = None
        self._writing: asyncio.Future[None] | None = None

    def open(self, retention: int) -> Loaded:
        """Open (or create) the file and read what it holds, at most ``retention`` messages a room."""
        try:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
            return self._load(db, retention)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot use the data file {self.path}: {exc}") from None

    @staticmethod
    def _load(db: sqlite3.Connection, retention: int) -> Loaded:
        rooms: dict[str, StoredRoom] = {}
        for room, born_ms, born_seq, del_ms, del_seq in db.execute("SELECT * FROM rooms"):
            rooms[room] = StoredRoom(IdKey(born_ms, born_seq), IdKey(del_ms, del_seq))
        rows = db.execute("SELECT room, ms, seq, user, text, client_id FROM messages ORDER BY room, ms, seq")
        for room, ms, seq, user, text, client_id in rows:
            stored = rooms.setdefault(room, StoredRoom(IdKey(ms, seq), IdKey(0, 0)))
            stored.messages.append(Message(f"{ms}-{seq}", room, user, text, client_id))
        for stored in rooms.values():
            if len(stored.messages) > retention:
                stored.max_deleted = stored.messages[-retention - 1].key
                del stored.messages[:-retention]
        last = db.execute("SELECT ms, seq FROM meta WHERE key = 'last_id'").fetchone()
        return Loaded(rooms, IdKey(*last) if last else IdKey(0, 0))

    # ---- writes: gathered during a loop turn, committed in the worker ---------

    def _current(self) -> _Batch:
        if self._batch is None:
            self._batch = _Batch()
            asyncio.get_running_loop().call_soon(self._flush)
        return self._batch

    def save(self, message: Message, new_room: bool) -> asyncio.Future[None]:
        """Store the message with this turn's others; the future is done once it is committed."""
        batch = self._current()
        batch.messages.append(message)
        if new_room:
            batch.born.setdefault(message.room, message.key)
        waiter = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        return waiter

    def trimmed(self, room: str, newest_deleted: IdKey) -> None:
        """Retention removed the room's messages up to ``newest_deleted``."""
        self._current().trimmed[room] = newest_deleted

    def dropped(self, room: str) -> None:
        """The room was freed (its TTL passed): forget it, epoch included."""
        batch = self._current()
        batch.dropped.add(room)
        batch.born.pop(room, None)
        batch.trimmed.pop(room, None)

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(self._worker, self._write, batch)
        self._writing = written
        written.add_done_callback(lambda done: self._settle(batch, done))

    @staticmethod
    def _settle(batch: _Batch, done: asyncio.Future[None]) -> None:
        error = done.exception()
        for waiter in batch.waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(StoreError(f"the data file could not be written: {error}"))

    def _write(self, batch: _Batch) -> None:
        db = self._db
        if db is None:
            raise StoreError("the data file is closed")
        db.execute("BEGIN")
        try:
            for room in batch.dropped:
                db.execute("DELETE FROM messages WHERE room = ?", (room,))
                db.execute("DELETE FROM rooms WHERE room = ?", (room,))
            db.executemany(
                "INSERT OR IGNORE INTO rooms VALUES (?, ?, ?, 0, 0)",
                [(room, born.ms, born.seq) for room, born in batch.born.items()],
            )
            db.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                [(m.room, m.key.ms, m.key.seq, m.user, m.text, m.client_id) for m in batch.messages],
            )
            for room, gone in batch.trimmed.items():
                db.execute(
                    "DELETE FROM messages WHERE room = ? AND (ms < ? OR (ms = ? AND seq <= ?))",
                    (room, gone.ms, gone.ms, gone.seq),
                )
                db.execute("UPDATE rooms SET deleted_ms = ?, deleted_seq = ? WHERE room = ?", (gone.ms, gone.seq, room))
            if batch.messages:
                last = batch.messages[-1].key
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_id', ?, ?)", (last.ms, last.seq))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        """Commit what is pending and close the file."""
        self._flush()
        if self._writing is not None:
            await asyncio.wait([self._writing], timeout=5.0)
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._worker, db.close)
        self._worker.shutdown(wait=False)


def resend_expiry(message: Message, window: float, now_ms: float | None = None) -> float | None:
    """When a stored message's client_id stops counting as a resend, on the monotonic clock; None if past."""
    if message.client_id is None:
        return None
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    left = window - (now_ms - message.key.ms) / 1000
    return time.monotonic() + left if left > 0 else None
