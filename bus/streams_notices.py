"""The notices half of presence on Redis: one pub/sub connection, the channel of every room with local members.

Join, leave and typing notices are published on ``chat:{<room>}:notices``
(by the presence scripts, in the same step as the counts they report). This
node subscribes to the channel of each room it has members in, on one
connection of its own, and hands each notice to ``notify``. Pub/sub keeps
nothing for a subscriber that is away, so whenever the connection comes back
the listener subscribes every room again and then sends each room a
``presence`` notice, the whole list read after the subscription took effect:
whatever was missed is in it.

``listen`` returns once Redis has the subscription (a PING on the same
connection is answered after the SUBSCRIBE), so a member list read after it
misses nothing: any change after the read arrives as a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any, Awaitable, Callable

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from bus import streams_scripts as lua
from bus.backend import BusUnavailable, Notify
from bus.message import Notice
from bus.streams_reader import BACKOFF_MAX, BACKOFF_MIN, REDIS_ERRORS, describe

log = structlog.get_logger("chat.bus")

IDLE_PING = 5.0  # seconds without traffic before the listener checks the connection with a PING

Members = Callable[[str], Awaitable[list[tuple[str, int]]]]


def _text(value: Any) -> str:
    """The client reads undecoded bytes (see StreamsBackend); channel names and payloads are UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


class NoticeListener:
    def __init__(self, *, client: Redis, node: str, timeout: float | None, members: Members) -> None:
        self.rooms: set[str] = set()
        self.closed = False
        self._client = client  # its own connection pool: the subscribed connection is this one's alone
        self._control = f"chat:{{@nodes}}:control:{node}"  # always subscribed, so a read always has something to wait on
        self._timeout = timeout
        self._members = members
        self._notify: Notify | None = None
        self._pubsub: PubSub | None = None
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)
        self._resync_token = ""
        self._heard = 0.0
        self._down = False
        self._backoff = BACKOFF_MIN
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, notify: Notify | None) -> asyncio.Task[None]:
        self._notify = notify
        return asyncio.create_task(self._run(), name="bus-notices")

    async def aclose(self) -> None:
        """After the task has stopped: close the connection."""
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()

    async def listen(self, room: str) -> None:
        """Receive the room's notices from now on. Best-effort: when the
        connection is down, the next one subscribes the room (and sends it the list)."""
        self.rooms.add(room)
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):  # the read loop sees a broken connection and starts over
            await asyncio.wait_for(self._subscribe(pubsub, [room]), self._timeout)

    async def unlisten(self, room: str) -> None:
        self.rooms.discard(room)
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await asyncio.wait_for(pubsub.unsubscribe(lua.notices_channel(room)), self._timeout)

    async def _subscribe(self, pubsub: PubSub, rooms: list[str]) -> None:
        await pubsub.subscribe(*[lua.notices_channel(room) for room in rooms])
        token = f"barrier-{next(self._tokens)}"
        answered = asyncio.get_running_loop().create_future()
        self._barriers[token] = answered
        try:
            await pubsub.ping(token)
            await answered
        finally:
            self._barriers.pop(token, None)

    # ---- the connection ---------------------------------------------------

    async def _run(self) -> None:
        """Runner: keep a subscribed connection; on failure log once, back off, start over."""
        while not self.closed:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                if not self._down:
                    log.warning("bus.notices_lost", reason=describe(exc))
                self._down = True
            except Exception:  # a bug must not end presence for good
                log.exception("bus.notices_failed")
                self._down = True
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(self._control), self._timeout)
            # From now on listen() subscribes on this connection itself; a
            # room it added before is in the list read next: none is left out.
            self._pubsub = pubsub
            rooms = sorted(self.rooms)
            if rooms:
                await asyncio.wait_for(pubsub.subscribe(*[lua.notices_channel(r) for r in rooms]), self._timeout)
            # Answered after the subscriptions took effect: then each room's
            # list is read and sent (see _pong).
            self._resync_token = f"resync-{next(self._tokens)}"
            await asyncio.wait_for(pubsub.ping(self._resync_token), self._timeout)
            await self._read(pubsub)
        finally:
            self._pubsub = None
            for answered in self._barriers.values():
                if not answered.done():
                    answered.set_exception(ConnectionError("notices connection lost"))
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()

    async def _read(self, pubsub: PubSub) -> None:
        self._heard = time.monotonic()
        while not self.closed:
            message = await pubsub.get_message(timeout=IDLE_PING)
            now = time.monotonic()
            if message is not None:
                self._heard = now
                self._handle(message)
            elif now - self._heard > 2 * IDLE_PING + (self._timeout or IDLE_PING):
                raise ConnectionError("no answer on the notices connection")
            else:  # quiet: make Redis say something, or find out it cannot
                await asyncio.wait_for(pubsub.ping("alive"), self._timeout)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            notice = lua.decode_notice(_text(message["channel"]), _text(message["data"]))
            if notice is not None:
                self._deliver(notice)
        elif kind == "pong":
            self._pong(_text(message.get("data")))

    def _pong(self, token: str) -> None:
        answered = self._barriers.get(token)
        if answered is not None and not answered.done():
            answered.set_result(None)
        if token == self._resync_token:
            self._resync_token = ""
            if self._down:
                log.info("bus.notices_recovered")
            self._down = False
            self._backoff = BACKOFF_MIN
            task = asyncio.create_task(self._send_lists(sorted(self.rooms)), name="bus-notices-lists")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_lists(self, rooms: list[str]) -> None:
        """Each room's whole member list, for whatever its members missed while this connection was away."""
        for room in rooms:
            try:
                members = await self._members(room)
            except BusUnavailable:
                return  # Redis is down again: the next connection sends the lists
            if room in self.rooms:
                self._deliver(Notice.presence(room, dict(members)))

    def _deliver(self, notice: Notice) -> None:
        if self._notify is None:
            return
        try:
            self._notify(notice)
        except Exception:  # a fan-out bug must not end the listener
            log.exception("bus.notify_failed", room=notice.room, kind=notice.kind)
