"""In-process backend: each room's log is a bounded deque in this process.

The embedded default when no Redis is configured; one process only. It takes
the same path as the Redis backend (store, then deliver to subscribed rooms)
so tests on the default configuration exercise the production path. Delivery
is scheduled with ``call_soon`` rather than made inside ``publish``, as a
stream consumer would, so a publisher never runs fan-out on its own stack.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from bus.backend import BusUnavailable, Deliver
from bus.message import Draft, History, IdKey, Message, Published, completeness

_NO_ID = IdKey(0, 0)


@dataclass
class _RoomLog:
    messages: deque[Message] = field(default_factory=deque)
    born: IdKey | None = None
    max_deleted: IdKey = _NO_ID


class MemoryBackend:
    def __init__(self, retention: int, resend_window: float) -> None:
        self._retention = retention
        self._resend_window = resend_window
        self._logs: dict[str, _RoomLog] = {}
        self._subscribed: set[str] = set()
        self._last = _NO_ID
        # (room, user, client_id) -> (message, expiry on the monotonic clock), oldest first.
        self._resends: OrderedDict[tuple[str, str, str], tuple[Message, float]] = OrderedDict()
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self._deliver = None

    def unavailable_reason(self) -> str | None:
        return None if self._deliver is not None else "bus closed"

    async def publish(self, draft: Draft) -> Published:
        if self._deliver is None or self._loop is None:
            raise BusUnavailable("bus closed")
        earlier = self._earlier_resend(draft)
        if earlier is not None:
            return Published(earlier, duplicate=True)
        message = draft.stored_as(str(self._next_id()))
        self._append(message)
        if draft.client_id is not None:
            key = (draft.room, draft.user, draft.client_id)
            self._resends[key] = (message, time.monotonic() + self._resend_window)
        if draft.room in self._subscribed:
            self._loop.call_soon(self._deliver_one, message)
        return Published(message)

    def _deliver_one(self, message: Message) -> None:
        if self._deliver is not None and message.room in self._subscribed:
            self._deliver([message])

    def _next_id(self) -> IdKey:
        now = int(time.time() * 1000)
        if now > self._last.ms:
            self._last = IdKey(now, 0)
        else:
            self._last = IdKey(self._last.ms, self._last.seq + 1)
        return self._last

    def _append(self, message: Message) -> None:
        log = self._logs.setdefault(message.room, _RoomLog())
        if log.born is None:
            log.born = message.key
        log.messages.append(message)
        while len(log.messages) > self._retention:
            log.max_deleted = log.messages.popleft().key

    def _earlier_resend(self, draft: Draft) -> Message | None:
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
        log = self._logs.get(room) or _RoomLog()
        retained = list(log.messages)
        if since is None:
            replay = retained[-limit:] if limit > 0 else []
        else:
            replay = [m for m in retained if m.key > since]
        complete = completeness(
            since, born=log.born, max_deleted=log.max_deleted,
            retained=len(retained), replayed=len(replay),
        )
        last_id = retained[-1].id if retained else None
        return History(replay, last_id, complete)

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)
