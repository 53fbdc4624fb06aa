"""In-process backend: each room's log is a bounded deque in this process.

The embedded default when no Redis is configured; one process only. It takes
the same path as the Redis backend (store, then deliver to subscribed rooms)
so tests on the default configuration exercise the production path. Delivery
is scheduled with ``call_soon`` rather than made inside ``publish``, as a
stream consumer would, so a publisher never runs fan-out on its own stack.
Presence is a dict of counts; its notices are scheduled the same way.

Memory stays bounded: each room keeps ``retention`` messages and at most
``history_bytes`` of text, and all rooms together at most ``memory_budget``
(bus/memory_logs.py); the resend map keeps ids, not messages, and at most
``MAX_RESENDS`` of them; and with a ``room_ttl`` a room nobody is in whose
last message is older than that is freed altogether (a later ``since`` into
it is then not ``complete``).

With a ``MessageStore`` (``--data-file``) the logs also live in a SQLite file:
read back at start, and each message, edit and deletion committed there
before ``publish`` or ``change`` returns and before anyone gets it (with the
others of its commit window: bus/memory_store.py), so a restart keeps history
as it was shown, ids and epochs.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque

from bus import changes
from bus.backend import BusUnavailable, Deliver, Notify
from bus.memory_file import Loaded
from bus.memory_logs import NO_ID, RoomLog, RoomLogs
from bus.memory_store import MessageStore, StoreError, resend_expiry
from bus.message import Change, ChangeDraft, Draft, Entry, History, IdKey, Message, Notice, Older, Published

MAX_RESENDS = 100_000  # client ids remembered at most; the oldest go first past it
SWEEP_EVERY = 60.0  # seconds between two looks for expired rooms (less for a short TTL)


def _newest(messages: list[Entry]) -> IdKey:
    return messages[-1].key if messages else NO_ID


class MemoryBackend:
    def __init__(
        self,
        retention: int,
        resend_window: float,
        room_ttl: float = 0.0,
        store: MessageStore | None = None,
        *,
        history_bytes: int = 0,
        memory_budget: int = 0,
    ) -> None:
        """``history_bytes`` and ``memory_budget``: bytes of text per room and over all rooms (0: no bound)."""
        self._retention = retention
        self._store = store
        self._resend_window = resend_window
        self._room_ttl = room_ttl
        self._sweeper: asyncio.TimerHandle | None = None
        self._logs = RoomLogs(retention, history_bytes, memory_budget, self._trimmed, self._dropped)
        self._subscribed: set[str] = set()
        self._last = NO_ID
        # (room, user, client_id) -> (message id, expiry on the monotonic clock), oldest first.
        # The id alone: a resend carries the same text, and whole messages
        # here cost their text for ten minutes whatever the retention.
        self._resends: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self._present: dict[str, dict[str, int]] = {}  # room -> user -> open connections
        self._deliver: Deliver | None = None
        self._notify: Notify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        self._deliver, self._notify = deliver, notify
        self._loop = asyncio.get_running_loop()
        if self._store is not None:
            self._restore(self._store.open(self._retention, self._committed))
        self._schedule_sweep()

    def _restore(self, loaded: Loaded) -> None:
        """Take back what the data file held: logs, epochs, the newest id, recent client ids."""
        self._last = max(self._last, loaded.last_id)
        # Least recently written first: the order the memory budget drops rooms in.
        for room, stored in sorted(loaded.rooms.items(), key=lambda item: _newest(item[1].messages)):
            self._logs.restore(room, RoomLog(deque(stored.messages), stored.born, stored.max_deleted))
        for room, stored in loaded.rooms.items():
            for message in stored.messages:
                self._last = max(self._last, message.key)
                if not isinstance(message, Message):
                    continue  # an edit or a deletion: no client id
                expiry = resend_expiry(message, self._resend_window)
                if expiry is not None and message.client_id is not None:
                    self._resends[(room, message.user, message.client_id)] = (message.id, expiry)

    async def close(self) -> None:
        self._deliver = self._notify = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._store is not None:
            await self._store.close()

    # ---- room lifetimes (--room-ttl) ------------------------------------------

    def _schedule_sweep(self) -> None:
        if self._room_ttl > 0 and self._loop is not None and self._deliver is not None:
            every = min(SWEEP_EVERY, max(self._room_ttl / 4, 0.05))
            self._sweeper = self._loop.call_later(every, self._sweep)

    def _sweep(self) -> None:
        """Free the rooms nobody is in whose last message is older than the TTL."""
        oldest_kept = int((time.time() - self._room_ttl) * 1000)
        for room, log in self._logs.rooms():
            if room in self._subscribed or room in self._present:
                continue
            if not log.messages or log.messages[-1].key.ms < oldest_kept:
                self._logs.drop(room)
        self._schedule_sweep()

    def _trimmed(self, room: str, newest_deleted: IdKey) -> None:
        if self._store is not None:
            self._store.trimmed(room, newest_deleted)

    def _dropped(self, room: str) -> None:
        """A room freed by its TTL or for the memory budget: the data file forgets it too."""
        if self._store is not None:
            self._store.dropped(room, self._last)

    @property
    def store(self) -> MessageStore | None:
        """The data file, when there is one (the moderation keeps its sanctions there too)."""
        return self._store

    def room_count(self) -> int:
        """Rooms whose history this process keeps (for tests and operators)."""
        return len(self._logs)

    def history_bytes(self) -> int:
        """Bytes of message text retained over every room (what ``memory_budget`` bounds)."""
        return self._logs.total

    def unavailable_reason(self) -> str | None:
        return None if self._deliver is not None else "bus closed"

    async def publish(self, draft: Draft) -> Published:
        if self._deliver is None or self._loop is None:
            raise BusUnavailable("bus closed")
        earlier = self._earlier_resend(draft)
        if earlier is not None:
            return Published(draft.stored_as(earlier), duplicate=True)
        message = draft.stored_as(str(self._next_id()))
        if draft.client_id is not None:
            key = (draft.room, draft.user, draft.client_id)
            self._resends[key] = (message.id, time.monotonic() + self._resend_window)
            if len(self._resends) > MAX_RESENDS:
                self._resends.popitem(last=False)
        if self._store is not None:
            await self._saved(message)  # logged and delivered by _committed, with its window's others
        else:
            self._append(message)
            if draft.room in self._subscribed:
                self._loop.call_soon(self._deliver_one, message)
        return Published(message)

    async def change(self, draft: ChangeDraft) -> Change:
        if self._deliver is None or self._loop is None:
            raise BusUnavailable("bus closed")
        log = self._logs.get(draft.room) or RoomLog()
        changes.target_of(log.messages, draft, int(time.time() * 1000))
        change = Change(str(self._next_id()), draft.room, draft.user, draft.kind, draft.target, draft.text)
        # In the data file like a message, in the room's order: a restart keeps it.
        if self._store is not None:
            await self._saved(change)
        else:
            self._append(change)
            if draft.room in self._subscribed:
                self._loop.call_soon(self._deliver_one, change)
        return change

    async def older(self, room: str, before: IdKey, limit: int) -> Older:
        log = self._logs.get(room) or RoomLog()
        return changes.older(log.messages, before, limit)

    def _committed(self, entries: list[Entry]) -> None:
        """The data file holds these now: into the logs, and out to the rooms' members.

        Called by the store's commit (a timer), never on a publisher's stack,
        so delivery need not be scheduled for later as it is without a store.
        """
        for entry in entries:
            self._append(entry)
            if self._deliver is not None and entry.room in self._subscribed:
                self._deliver([entry])

    async def _saved(self, entry: Entry) -> None:
        """Once the data file holds the entry (and ``_committed`` logged and delivered it).
        Not held: BusUnavailable, the entry was not accepted."""
        assert self._store is not None
        log = self._logs.get(entry.room)
        try:
            await self._store.save(entry, new_room=log is None or log.born is None)
        except StoreError as exc:
            if isinstance(entry, Message) and entry.client_id is not None:
                self._resends.pop((entry.room, entry.user, entry.client_id), None)
            raise BusUnavailable(str(exc)) from None

    def _deliver_one(self, message: Entry) -> None:
        if self._deliver is not None and message.room in self._subscribed:
            self._deliver([message])

    def _next_id(self) -> IdKey:
        now = int(time.time() * 1000)
        if now > self._last.ms:
            self._last = IdKey(now, 0)
        else:
            self._last = IdKey(self._last.ms, self._last.seq + 1)
        return self._last

    def _append(self, message: Entry) -> None:
        self._logs.append(message)

    def _earlier_resend(self, draft: Draft) -> str | None:
        """The id this user's ``client_id`` was stored under in the room, within the window."""
        now = time.monotonic()
        while self._resends:
            oldest_key, (_, expiry) = next(iter(self._resends.items()))
            if expiry > now:
                break
            del self._resends[oldest_key]
        if draft.client_id is None:
            return None
        found = self._resends.get((draft.room, draft.user, draft.client_id))
        return found[0] if found else None

    async def history(self, room: str, since: IdKey | None, limit: int) -> History:
        log = self._logs.get(room) or RoomLog()
        retained = log.messages
        if since is None:
            replay, _ = changes.tail(reversed(retained), limit)
        else:
            replay = [m for m in retained if m.key > since]
        last_id = retained[-1].id if retained else None
        return History(changes.fold(replay, since), last_id, log.complete(since, len(replay)))

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    # ---- presence: one node, so this node's counts are the totals ------------

    async def set_connections(self, room: str, user: str, connections: int) -> None:
        if self._deliver is None:
            raise BusUnavailable("bus closed")
        users = self._present.setdefault(room, {})
        was_in = users.pop(user, 0) > 0
        if connections > 0:
            users[user] = connections
        elif not users:
            del self._present[room]
        if was_in != (connections > 0):
            self._schedule(Notice(room, "join" if connections > 0 else "leave", user))

    async def members(self, room: str) -> list[tuple[str, int]]:
        return sorted(self._present.get(room, {}).items())

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        found = sorted((room, len(users)) for room, users in self._present.items() if room > after and users)
        return found[:limit]

    async def announce(self, notice: Notice, once_per: float) -> bool:
        """One node: the RoomBus's own throttle already covers every connection, so ``once_per`` adds nothing."""
        if self._deliver is None:
            raise BusUnavailable("bus closed")
        self._schedule(notice)
        return True

    def _schedule(self, notice: Notice) -> None:
        if self._loop is not None and notice.room in self._subscribed:
            self._loop.call_soon(self._notify_one, notice)

    def _notify_one(self, notice: Notice) -> None:
        if self._notify is not None and notice.room in self._subscribed:
            self._notify(notice)
