"""The room WebSocket of sections 4 and 4b: open -> join, on_message -> publish or typing, on_close -> leave.

The handler speaks WebSocket and JSON; everything about storing, ordering
and fanning out messages is the RoomBus's. It never writes to another
connection: frames for this client arrive through ``send_frame`` from the bus.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler, WebSocketProtocol

from bus.backend import BusUnavailable
from bus.message import Draft, History, IdKey, id_key
from bus.room_bus import RoomBus
from config.settings import Settings
from handlers.identity import cookie_user, guest_name, is_room_name
from handlers.inbound import ChatRequest, FrameError, TypingRequest, parse_frame
from handlers.rate_limit import TokenBucket
from ops.metrics import Metrics

log = structlog.get_logger("chat.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame around ``payload`` (RFC 6455, section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class SocketRegistry:
    """The open room sockets of this process, so shutdown can close them all and wait."""

    def __init__(self) -> None:
        self.sockets: set["RoomSocket"] = set()
        self._ids = itertools.count(1)
        self._empty = asyncio.Event()
        self._empty.set()

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, socket: "RoomSocket") -> None:
        self.sockets.add(socket)
        self._empty.clear()

    def discard(self, socket: "RoomSocket") -> None:
        self.sockets.discard(socket)
        if not self.sockets:
            self._empty.set()

    def close_all(self, code: int, reason: str) -> None:
        for socket in list(self.sockets):
            socket.close(code, reason)

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every socket has closed; False if some are still open at ``timeout``."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def _host_port(netloc: str, scheme: str) -> str:
    """``host:port`` with the scheme's default port made explicit, lower-cased."""
    netloc = netloc.lower()
    if netloc.startswith("["):
        has_port = "]:" in netloc
    else:
        has_port = ":" in netloc
    return netloc if has_port else f"{netloc}:{_DEFAULT_PORTS.get(scheme, '80')}"


class RoomSocket(WebSocketHandler):
    def initialize(self, bus: RoomBus, settings: Settings, registry: SocketRegistry, metrics: Metrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._counted = False  # in chat_connections; on_close must undo only what open did
        self._settings = settings
        self._registry = registry
        self._joined = False
        self._closed = False
        self._opened_at = 0.0
        self._messages_in = 0
        self._messages_out = 0
        self._unsent = 0
        self._server_close_code: int | None = None
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self.room = ""
        self.user = ""
        self.conn = ""
        self._since: IdKey | None = None

    # ---- handshake -------------------------------------------------------

    async def get(self, *args: Any, **kwargs: Any) -> None:
        room = args[0]
        if not is_room_name(room):
            raise HTTPError(404)
        since = self.get_query_argument("since", None)
        if since is not None:
            try:
                self._since = id_key(since)
            except ValueError:
                raise HTTPError(400, reason="since must be a message id") from None
        await super().get(*args, **kwargs)

    def get_compression_options(self) -> None:
        """No permessage-deflate: ``send_frame`` writes uncompressed frames itself."""
        return None

    def check_origin(self, origin: str) -> bool:
        """Refuse browsers on other sites: a page elsewhere must not speak as our user.

        Same host (the proxy's ``X-Forwarded-Host`` when configured to trust
        it) or an origin in ``allowed_origins`` is accepted. Tornado calls this
        only when an Origin header is present; non-browser clients send none.
        """
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            return False
        if f"{parts.scheme}://{parts.netloc}".lower() in self._settings.allowed_origins:
            return True
        host = self.request.host
        if self._settings.behind_proxy:
            host = self.request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        scheme = "https" if parts.scheme == "https" else "http"
        return _host_port(parts.netloc, scheme) == _host_port(host, scheme)

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if protocol is not None:
            # Tornado closes a frame over the size limit with 1009 by itself and
            # keeps no note of the code; remember it so ws.disconnect can log it.
            protocol_close = protocol.close

            def close_noting_code(code: int | None = None, reason: str | None = None) -> None:
                if code is not None and self._server_close_code is None:
                    self._server_close_code = code
                protocol_close(code, reason)

            protocol.close = close_noting_code  # type: ignore[method-assign]
        return protocol

    # ---- life cycle ------------------------------------------------------

    async def open(self, *args: Any, **kwargs: Any) -> None:
        self.room = args[0]
        self.user = cookie_user(self) or guest_name()
        self.conn = f"{self._settings.node_id}:{self._registry.next_id()}"
        self._opened_at = time.monotonic()
        self._registry.add(self)
        self._metrics.connection_opened()
        self._counted = True
        structlog.contextvars.bind_contextvars(conn=self.conn, room=self.room, user=self.user)
        log.info("ws.connect", client=self.request.remote_ip, since=str(self._since) if self._since else None)
        try:
            history = await self._bus.join(self.room, self, self.user, self._since)
        except BusUnavailable as exc:
            log.warning("ws.join_failed", reason=str(exc))
            self._send_json(FrameError("unavailable", "the chat is unavailable, try again").frame())
            self._close_by_server(CLOSE_TRY_AGAIN, "bus unavailable")
            return
        if self._closed:
            # Gone while joining: on_close saw no seat to give up, so give it
            # up here, or the user would stay in the room's presence for good.
            self._leave_task = asyncio.ensure_future(self._bus.leave(self.room, self))
            return
        self._joined = True
        self._replay(history)
        self._bus.go_live(self.room, self)  # presence, then live messages and notices

    def _replay(self, history: History) -> None:
        for message in history.messages:
            self.send_frame(message.frame(replay=True))
        self._send_json({
            "type": "ready", "room": self.room, "user": self.user,
            "last_id": history.last_id, "complete": history.complete,
        })

    def on_close(self) -> None:
        self._closed = True
        self._registry.discard(self)
        if self._counted:
            self._counted = False
            self._metrics.connection_closed()
        code = self._server_close_code or self.close_code
        # conn, room and user come from the context open() bound: Tornado runs
        # on_close in the connection's own task, whoever closed it.
        log.info(
            "ws.disconnect", code=code,
            reason=self.close_reason, duration_ms=round((time.monotonic() - self._opened_at) * 1000),
            messages_in=self._messages_in, messages_out=self._messages_out,
        )
        if self._joined:
            self._joined = False
            # Kept so the task is not collected before it runs.
            self._leave_task = asyncio.ensure_future(self._bus.leave(self.room, self))

    # ---- inbound ---------------------------------------------------------

    async def on_message(self, data: str | bytes) -> None:
        try:
            request = parse_frame(data, self._settings.max_message_chars)
            if isinstance(request, TypingRequest):
                # Throttled by the bus (one per user per second), not by the
                # message bucket: typing must not use up a user's messages.
                await self._bus.typing(self.room, self)
                return
            if not self._bucket.take():
                raise FrameError("rate_limited", "too many messages, slow down", request.client_id)
            await self._publish(request)
        except FrameError as error:
            self._reject(error)

    async def _publish(self, request: ChatRequest) -> None:
        draft = Draft(self.room, self.user, request.text, request.client_id)
        try:
            with self._metrics.publish_seconds.time():
                published = await self._bus.publish(draft)
        except BusUnavailable as exc:
            log.warning("bus.publish_failed", reason=str(exc))
            raise FrameError("unavailable", "the message was not stored, try again", request.client_id) from None
        self._messages_in += 1
        message = published.message
        fields: dict[str, Any] = {"msg_id": message.id, "bytes": len(request.text.encode())}
        if published.duplicate:
            fields["resend"] = True
        else:
            self._metrics.message_published()
        if self._settings.log_message_text:
            fields["text"] = request.text
        log.info("message.accepted", **fields)
        if request.client_id is not None:
            self._send_json({"type": "ack", "client_id": request.client_id, "id": message.id})

    def _reject(self, error: FrameError) -> None:
        log.info("message.rejected", reason=error.code)
        self._metrics.message_rejected(error.code)
        self._send_json(error.frame())

    # ---- outbound --------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Queue a frame for this client without waiting (the bus's Member).

        The bytes not yet handed to the kernel are counted; past
        ``send_buffer_limit`` the client is not keeping up and is dropped with
        1008 so that it holds no memory and slows nobody.

        The frame goes straight to the connection's stream rather than through
        ``write_message``, which wraps every write in a coroutine Task: one
        Task per recipient per message was the largest cost of fan-out we
        control (bench/RESULTS.md, "Prototype"). Valid because server frames
        are unmasked and this server offers no compression.
        """
        connection = self.ws_connection
        if connection is None or connection.is_closing() or connection.stream is None:
            return
        size = len(frame)
        if self._unsent + size > self._settings.send_buffer_limit:
            self._drop_slow_client()
            return
        try:
            written = connection.stream.write(text_frame(frame))
        except StreamClosedError:
            return
        self._unsent += size
        self._messages_out += 1
        written.add_done_callback(lambda done: self._flushed(done, size))

    def _drop_slow_client(self) -> None:
        log.warning("ws.slow_consumer", conn=self.conn, room=self.room, user=self.user, unsent=self._unsent)
        connection = self.ws_connection
        self._close_by_server(CLOSE_POLICY, "too slow: unsent data over the limit")
        # The close frame waits behind the unread data and a client that does
        # not read will not answer it: free the connection now, not in 5 s.
        if connection is not None and connection.stream is not None:
            connection.stream.close()

    def _flushed(self, done: Any, size: int) -> None:
        self._unsent -= size
        if not done.cancelled():
            done.exception()  # a closed stream is reported by on_close, not here

    def _send_json(self, body: dict[str, Any]) -> None:
        self.send_frame(orjson.dumps(body))

    def _close_by_server(self, code: int, reason: str) -> None:
        self._server_close_code = code
        self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is not None and self._server_close_code is None:
            self._server_close_code = code
        super().close(code, reason)
