"""The in-process bus's history on disk: one SQLite file (``--data-file``).

The in-process bus keeps serving from memory; this file only makes what it
holds survive a restart: every room's retained messages, its epoch (the first
id it ever held) and its newest trimmed id, and the newest id handed out, so
that after a restart ids keep increasing and a resume across it is complete.

Writes are grouped (a group commit): the messages, edits and deletions that
arrive within ``window`` seconds of the first of them (``--commit-window``,
5 ms by default) are one transaction, and none is acknowledged or delivered
before it is committed. At a few messages a second per room nearly every
loop turn holds one message, and a commit per turn costs far more CPU per
delivery than a commit per window (bench/results/issue-23-data-file.md).
The price is the window: a message waits up to that long for its ``ack``.
The file is a WAL journal, ``synchronous=NORMAL``, exclusive locking (this
process alone uses it): a commit appends to the journal without waiting for
the disk, and survives the process dying (a power cut may lose the last
commits). The one step that waits for the disk, copying the journal into the
file (a checkpoint, with fsync), runs in a worker thread every
``CHECKPOINT_EVERY`` commits; a commit through a thread instead costs far
more CPU per message, handing each one over to the thread (bench/RESULTS.md,
"Measurements formerly in code comments").
``save``'s future is done only once its message is committed, so an accepted
message is in the file before anyone is told of it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bus.backend import BusUnavailable
from bus.memory_file import (
    INSERT_CHANGE,
    INSERT_MESSAGE,
    SCHEMA,
    Loaded,
    change_row,
    load,
    load_sanctions,
    message_row,
    write_sanctions,
)
from bus.message import Entry, IdKey, Message
from bus.moderation import Sanction

TRIM_EVERY = 100  # trims of a room gathered before the file follows them
CHECKPOINT_EVERY = 500  # commits between two checkpoints of the journal into the file
COMMIT_WINDOW = 0.005  # seconds from a batch's first write to its commit (--commit-window)


def _nothing(entries: list[Entry]) -> None:
    return None


class StoreError(Exception):
    """The data file cannot be opened or written; the message says which file and why."""


@dataclass
class _Batch:
    messages: list[Entry] = field(default_factory=list)  # messages, edits and deletions, in order
    sanctions: list[Sanction] | None = None  # the bans and mutes in force, when they changed
    born: dict[str, IdKey] = field(default_factory=dict)  # rooms created in this batch
    trimmed: dict[str, IdKey] = field(default_factory=dict)  # room -> newest id trimmed away
    dropped: set[str] = field(default_factory=set)  # rooms freed altogether
    last_id: IdKey | None = None  # the newest id handed out, kept when a room is dropped
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class MessageStore:
    """A SQLite file written on the event loop, one transaction per commit window; checkpoints in a worker thread."""

    def __init__(self, path: str, window: float = COMMIT_WINDOW) -> None:
        self.path = Path(path)
        self.window = window
        self._db: sqlite3.Connection | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-store")
        self._batch: _Batch | None = None
        self._timer: asyncio.TimerHandle | None = None  # the current batch's commit
        self._trims: dict[str, IdKey] = {}  # room -> newest id trimmed, not yet in the file
        self._trim_counts: dict[str, int] = {}
        self._commits = 0
        self.checkpoint_every = CHECKPOINT_EVERY
        self._on_commit: Callable[[list[Entry]], None] = _nothing
        self._checkpointing: asyncio.Future[None] | None = None
        self.checkpoint_error: str | None = None

    def open(self, retention: int, on_commit: Callable[[list[Entry]], None]) -> Loaded:
        """Open (or create) the file and read what it holds, at most ``retention`` messages a room.

        ``on_commit`` gets each batch's entries once they are committed, before ``save``'s futures are done.
        """
        self._on_commit = on_commit
        try:
            if self.path.parent != Path(""):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # The room's messages: readable by this user alone (SQLite gives its journal the same mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA locking_mode=EXCLUSIVE")  # this process alone: no shared-memory locks per commit
            db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the worker (see _checkpoint)
            db.executescript(SCHEMA)
            self._db = db
            return load(db, retention)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot use the data file {self.path}: {exc}") from None

    # ---- writes: gathered for a commit window, committed at its end --------

    def _current(self) -> _Batch:
        if self._batch is None:
            self._batch = _Batch()
            self._timer = asyncio.get_running_loop().call_later(self.window, self._flush)
        return self._batch

    def save(self, message: Entry, new_room: bool) -> asyncio.Future[None]:
        """Store the message (or edit, or deletion) with the others of this commit window.

        The future is done once they are committed (after ``on_commit`` got them),
        or fails with StoreError: then the message was not accepted.
        """
        batch = self._current()
        batch.messages.append(message)
        if new_room:
            batch.born.setdefault(message.room, message.key)
        waiter = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        return waiter

    def trimmed(self, room: str, newest_deleted: IdKey) -> None:
        """Retention removed the room's messages up to ``newest_deleted``.

        The file follows every ``TRIM_EVERY`` trims, not each one: a delete per
        message doubled the cost of a commit. Reading back keeps ``retention``
        messages a room whatever the file holds, so nothing changes for a reader.
        """
        self._trims[room] = newest_deleted
        self._trim_counts[room] = count = self._trim_counts.get(room, 0) + 1
        if count >= TRIM_EVERY:
            self._current().trimmed[room] = self._trims.pop(room)
            del self._trim_counts[room]

    def dropped(self, room: str, last_id: IdKey) -> None:
        """The room was freed (its TTL passed): forget it, epoch included; ``last_id`` is the bus's newest id."""
        batch = self._current()
        batch.dropped.add(room)
        batch.last_id = last_id
        batch.born.pop(room, None)
        waiting = [m.key for m in batch.messages if m.room == room]
        if waiting:  # written after the room was freed: they start it again (the drop is written first)
            batch.born[room] = waiting[0]
        batch.trimmed.pop(room, None)
        self._trims.pop(room, None)
        self._trim_counts.pop(room, None)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # when called early (a checkpoint ended, or close)
            self._timer = None
        if self._checkpointing is not None:
            return  # the worker has the file: this batch grows until _checkpointed flushes it
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            self._write(batch)
        except (sqlite3.Error, StoreError) as exc:
            error = StoreError(f"the data file {self.path} could not be written: {exc}")
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        self._on_commit(batch.messages)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._committed_one()

    def _committed_one(self) -> None:
        self._commits += 1
        if self._commits >= self.checkpoint_every and self._checkpointing is None:
            self._commits = 0
            self._checkpointing = asyncio.get_running_loop().run_in_executor(self._worker, self._checkpoint)
            self._checkpointing.add_done_callback(self._checkpointed)

    def _write(self, batch: _Batch) -> None:
        db = self._db
        if db is None:
            raise StoreError("closed")
        alone = not (batch.born or batch.trimmed or batch.dropped or batch.last_id or batch.sanctions is not None)
        if alone and len(batch.messages) == 1 and isinstance(batch.messages[0], Message):
            # a quiet window: one statement, its own transaction
            db.execute(INSERT_MESSAGE, message_row(batch.messages[0]))
            return
        db.execute("BEGIN")
        try:
            for room in batch.dropped:
                db.execute("DELETE FROM messages WHERE room = ?", (room,))
                db.execute("DELETE FROM changes WHERE room = ?", (room,))
                db.execute("DELETE FROM rooms WHERE room = ?", (room,))
            if batch.born:
                db.executemany(
                    "INSERT OR IGNORE INTO rooms VALUES (?, ?, ?, 0, 0)",
                    [(room, born.ms, born.seq) for room, born in batch.born.items()],
                )
            if batch.messages:
                db.executemany(INSERT_MESSAGE, [message_row(m) for m in batch.messages if isinstance(m, Message)])
                db.executemany(INSERT_CHANGE, [change_row(c) for c in batch.messages if not isinstance(c, Message)])
            if batch.sanctions is not None:
                write_sanctions(db, batch.sanctions)
            for room, gone in batch.trimmed.items():
                # A row value, not "ms < ? OR ...": that form scans the whole room.
                db.execute("DELETE FROM messages WHERE room = ? AND (ms, seq) <= (?, ?)", (room, gone.ms, gone.seq))
                db.execute("DELETE FROM changes WHERE room = ? AND (ms, seq) <= (?, ?)", (room, gone.ms, gone.seq))
                db.execute("UPDATE rooms SET deleted_ms = ?, deleted_seq = ? WHERE room = ?", (gone.ms, gone.seq, room))
            if batch.last_id is not None:  # the newest id, once it may no longer be in a room
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_id', ?, ?)", batch.last_id)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- bans and mutes: the same file, the same writer ---------------------

    def sanctions(self) -> list[Sanction]:
        """The bans and mutes the file holds (read at start, once ``open`` has read the rest)."""
        if self._db is None:
            raise StoreError("closed")
        try:
            return load_sanctions(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the data file {self.path}: {exc}") from None

    def save_sanctions(self, sanctions: list[Sanction]) -> asyncio.Future[None]:
        """Replace the bans and mutes the file holds, with this window's other writes (done once committed)."""
        batch = self._current()
        batch.sanctions = list(sanctions)
        waiter = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        return waiter

    # ---- checkpoints: the one write that waits for the disk, off the loop ----

    def _checkpoint(self) -> None:
        """Copy the journal into the file and fsync it, in the worker; the loop leaves the file alone meanwhile.

        One connection (the file is opened in exclusive locking mode, which
        spares every commit the shared-memory locks), used by one thread at a time.
        """
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            self.checkpoint_error = str(done.exception())
        self._flush()  # what gathered meanwhile

    async def close(self) -> None:
        """Commit what is pending, the postponed trims too, and close the file."""
        if self._db is None:
            return
        for room, gone in self._trims.items():
            self._current().trimmed[room] = gone
        self._trims.clear()
        self._trim_counts.clear()
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing], timeout=5.0)
        self._flush()
        db, self._db = self._db, None
        db.close()  # the last connection: SQLite checkpoints and removes the journal
        self._worker.shutdown(wait=False)


def resend_expiry(message: Message, window: float, now_ms: float | None = None) -> float | None:
    """When a stored message's client_id stops counting as a resend, on the monotonic clock; None if past."""
    if message.client_id is None:
        return None
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    left = window - (now_ms - message.key.ms) / 1000
    return time.monotonic() + left if left > 0 else None


class StoreSanctions:
    """The moderation's ``SanctionFile`` on the data file: a table of the store's own file."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def load(self) -> list[Sanction]:
        return self._store.sanctions()

    async def save(self, sanctions: list[Sanction]) -> None:
        try:
            await self._store.save_sanctions(sanctions)
        except StoreError as exc:
            raise BusUnavailable(str(exc)) from None
