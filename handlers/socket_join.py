"""The room socket's join: open, the identity known, the room joined, the history replayed at the client's pace.

The order a client sees is docs/protocol.md's: the history, ``ready``, then
live messages and presence.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from tornado.iostream import StreamClosedError

from bus import frames
from bus.backend import BusUnavailable
from bus.message import History
from handlers.identity import Identity, cookie_user, guest_name
from handlers.inbound import FrameError
from handlers.moderated import CLOSE_MODERATED, banned
from handlers.socket_state import CLOSE_TRY_AGAIN, SocketState
from handlers.websocket.slots import release_handshake

log = structlog.get_logger("chat.ws")

DEFAULT_REPLAY_STALL = 20.0  # seconds a replay waits on a client that reads nothing, when pings are off


class Joining(SocketState):
    """The join's part of ``RoomSocket``: from ``open`` until the connection is live in its room."""

    __slots__ = ()

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # Tornado leaves Nagle's algorithm on after the handshake: a frame
        # written right after another (a message's echo, then its ack) would
        # wait for the client's delayed ACK, 40 ms on Linux.
        self.set_nodelay(True)
        self.room = args[0]
        self.conn = f"{self._settings.node_id}:{self._registry.next_id()}"
        self._opened_at = time.monotonic()
        self._registry.add(self)
        if self._registry.pings is not None and self._registry.pings.enabled:
            self._registry.pings.add(self)
        self._metrics.connection_opened()
        self._counted = True
        structlog.contextvars.bind_contextvars(conn=self.conn, room=self.room)
        identity = self._gate.open(self) if self._gate is not None else Identity(cookie_user(self) or guest_name())
        if identity is not None:
            self._know(identity)
        log.info("ws.connect", client=self._client, since=str(self._since) if self._since else None)
        release_handshake(self)
        if identity is not None:
            await self._enter()

    def _know(self, identity: Identity) -> None:
        self.identity = identity
        self.user = identity.key
        structlog.contextvars.bind_contextvars(user=identity.name)
        if identity.user_id is not None:
            structlog.contextvars.bind_contextvars(user_id=identity.user_id)

    async def _enter(self) -> None:
        """Join the room as the known identity: history, ready, then live (the rest of ``open``)."""
        if self.identity is not None and banned(self._moderation, self.identity, self.room):
            log.info("ws.banned")
            self._close_by_server(CLOSE_MODERATED, "banned from this room")
            return
        started = time.perf_counter()
        try:
            history = await self._bus.join(self.room, self, self.user, self._since)
        except BusUnavailable as exc:
            log.warning("ws.join_failed", reason=str(exc))
            self.send_frame(FrameError("unavailable", "the chat is unavailable, try again").frame())
            self._close_by_server(CLOSE_TRY_AGAIN, "bus unavailable")
            return
        if self._closed:
            # Gone while joining: on_close saw no seat to give up, so give it
            # up here, or the user would stay in the room's presence for good.
            self._bus.leave_soon(self.room, self)
            return
        self._joined = True
        joined = time.perf_counter()
        self._metrics.join_took(joined - started)
        if not await self._replay(history):
            return
        self._metrics.replay_took(time.perf_counter() - joined)
        self._bus.go_live(self.room, self)  # presence, then live messages and notices

    async def _replay(self, history: History) -> bool:
        """The history, then ``ready``, at the pace the client reads; False when it does not read.

        The replay may be larger than the slow-client bound (a room of long
        messages, a ``since`` far back). Written at once, it would trip the
        bound before ``ready`` whatever the reader did, since bytes leave the
        count only once flushed. So whenever the next frame would pass half
        the bound, the replay waits for what is queued to reach the kernel: a
        reader is never dropped for a large history, and a client that reads
        nothing for ``replay_stall`` seconds is dropped holding no more than
        the bound. Each client's replays together keep to ``--replay-rate``
        after a first ``--replay-burst`` (handlers/joins.py). Live messages
        wait in the member's seat meanwhile.
        ``--history 0`` replays nothing to a plain join, on any backend.
        """
        replay_all = self._since is not None or self._settings.history > 0
        in_flight = self._settings.send_buffer_limit // 2  # the other half for what goes live after it
        budget, payer = self._limits.joins.replay, (self.identity or Identity(self.user)).budgets(self._client_key)[1]
        for message in history.messages if replay_all else ():
            frame = message.frame(replay=True)
            if self._unsent + len(frame) > in_flight and not await self._drained():
                return False
            wait = budget.reserve(payer, len(frame))  # paced per client: a burst, then --replay-rate
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed:
                    return False
            self.send_frame(frame)
        self.send_frame(frames.ready(self.room, self.user, history.last_id, history.complete))
        return not self._closed

    async def _drained(self) -> bool:
        """Wait until every queued byte reached the kernel; on a stall, drop the client and say False."""
        last = self._last_write
        if last is None or self._closed:
            return not self._closed
        try:
            await asyncio.wait_for(asyncio.shield(last), self._replay_stall())
        except asyncio.TimeoutError:
            self._drop_slow_client()
            return False
        except StreamClosedError:
            return False
        return not self._closed

    def _replay_stall(self) -> float:
        """How long a replay waits for the client to read: as long as a ping may go unanswered."""
        return self._settings.ping_timeout or DEFAULT_REPLAY_STALL
