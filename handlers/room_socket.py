"""The room WebSocket (docs/protocol.md): open -> join, on_message -> publish or typing, on_close -> leave.

The handler speaks WebSocket and JSON; everything about storing, ordering
and fanning out messages is the RoomBus's. It never writes to another
connection: frames for this client arrive through ``send_frame`` from the bus.

``RoomSocket`` is made of parts, one concept a module: its state
(handlers/socket_state.py), the handshake and its refusals
(handlers/socket_handshake.py), the join and replay (handlers/socket_join.py),
the frames a client sends (handlers/socket_inbound.py). Here, on the class
itself: the write path every delivered frame takes, the slow-client drop,
and the close.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from tornado.websocket import WebSocketProtocol

from handlers.limits import SocketLimits
from handlers.registry import SocketRegistry
from handlers.socket_handshake import Handshake
from handlers.socket_inbound import Inbound
from handlers.socket_state import CLOSE_GOING_AWAY, CLOSE_POLICY
from handlers.websocket.control import PING_TIMED_OUT, aborter, watch_closes
from handlers.websocket.slots import slotted_protocol
from handlers.websocket.writer import GONE, KERNEL, text_frame, write_text

log = structlog.get_logger("chat.ws")

__all__ = ["CLOSE_GOING_AWAY", "RoomSocket", "SocketLimits", "SocketRegistry", "text_frame"]


class RoomSocket(Handshake, Inbound):
    # The state's slots are SocketState's; the parts add none.
    __slots__ = ()

    # ---- outbound --------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Queue a frame for this client without waiting (the bus's Member).

        The bytes not yet handed to the kernel are counted; past
        ``send_buffer_limit`` the client is not keeping up and is dropped with
        1008 so that it holds no memory and slows nobody. Frames go straight
        to the stream (handlers/websocket/writer.py says why).
        """
        size = len(frame)
        if self._unsent + size > self._settings.send_buffer_limit:
            self._drop_slow_client()
            return
        written = write_text(self, frame)
        if written is GONE:
            return
        self._messages_out += 1
        if written is KERNEL:
            return
        self._unsent += size
        self._last_write = written
        written.add_done_callback(lambda done: self._flushed(done, size))

    def _drop_slow_client(self) -> None:
        if self._server_close_code is None:  # frames queued after the drop come here again: count it once
            self._metrics.slow_client_dropped()
        log.warning("ws.slow_consumer", conn=self.conn, room=self.room, user=self.user, unsent=self._unsent)
        abort = aborter(self)
        self._close_by_server(CLOSE_POLICY, "too slow: unsent data over the limit")
        # The close frame waits behind the unread data and a client that does
        # not read will not answer it: free the connection now, not in 5 s.
        abort()

    def _flushed(self, done: Any, size: int) -> None:
        self._unsent -= size
        if not done.cancelled():
            done.exception()  # a closed stream is reported by on_close, not here

    def _close_by_server(self, code: int, reason: str) -> None:
        self._server_close_code = code
        self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is not None and self._server_close_code is None:
            self._server_close_code = code
        super().close(code, reason)

    # ---- the connection's control and close ------------------------------

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = slotted_protocol(self)
        if protocol is not None:
            # The reader closes a frame over the size limit (1009) and a
            # protocol violation (1002, 1007) through the protocol, and
            # Tornado keeps no note of the code: it is noted here for the log.
            watch_closes(protocol, self._closed_by_protocol)
        return protocol

    def _closed_by_protocol(self, code: int | None, reason: str | None) -> None:
        if code is not None and self._server_close_code is None:
            self._server_close_code = code
        if reason == PING_TIMED_OUT:
            # A peer that answers no ping will not answer the close frame
            # either: end it now so its user leaves the room now, not in 5 s.
            asyncio.get_running_loop().call_soon(aborter(self))

    def on_close(self) -> None:
        self._closed = True
        self._release_slot()
        if self._gate is not None:
            self._gate.stop()
        self._registry.discard(self)
        if self._registry.pings is not None:
            self._registry.pings.discard(self)
        code = self._server_close_code or self.close_code
        if self._counted:
            self._counted = False
            self._metrics.connection_closed(code)
        # conn, room and user come from the context open() bound: Tornado runs
        # on_close in the connection's own task, whoever closed it.
        log.info(
            "ws.disconnect",
            code=code,
            reason=self.close_reason,
            duration_ms=round((time.monotonic() - self._opened_at) * 1000),
            messages_in=self._messages_in,
            messages_out=self._messages_out,
        )
        if self._joined:
            self._joined = False
            self._bus.leave_soon(self.room, self)
