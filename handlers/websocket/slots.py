"""Tornado's handler and protocol attributes in slots, the protocol's receive loop ours, the handshake let go.

An idle socket is mostly Tornado's objects: these keep them small. The
receive loop of ``SlottedProtocol13`` is handlers/websocket/reader.py.
"""

from __future__ import annotations

from typing import Any, Callable

from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13, _WebSocketParams

from handlers.websocket.reader import FrameReader
from handlers.websocket.stream import lean_stream

# Tornado's per-connection attributes, kept in slots by our subclasses rather
# than in instance dicts: with 20 to 30 keys each, Tornado's handler and
# protocol dicts cost about 0.9 and 1.5 KiB per idle connection, slots 8 bytes
# an attribute. A name Tornado stops using costs 8 bytes; one it adds lands
# in the dict as before. Method names (Tornado replaces ``write``, ``finish``
# ... on an open socket's instance) must not be here: a slot would hide them.
HANDLER_SLOTS = (
    "_auto_finish",
    "_current_user",
    "_finished",
    "_headers",
    "_headers_written",
    "_on_close_called",
    "_prepared_future",
    "_reason",
    "_status_code",
    "_transforms",
    "_write_buffer",
    "application",
    "close_code",
    "close_reason",
    "open_args",
    "open_kwargs",
    "path_args",
    "path_kwargs",
    "request",
    "ui",
    "ws_connection",
)
PROTOCOL_SLOTS = (
    "_compression_options",
    "_compressor",
    "_decompressor",
    "_final_frame",
    "_fragmented_message_buffer",
    "_fragmented_message_opcode",
    "_frame_compressed",
    "_frame_length",
    "_frame_mask",
    "_frame_opcode",
    "_masked_frame",
    "_message_bytes_in",
    "_message_bytes_out",
    "_pending_pong",
    "_ping_coroutine",
    "_pong_future",
    "_received_pong",
    "_selected_subprotocol",
    "_waiting",
    "_wire_bytes_in",
    "_wire_bytes_out",
    "client_terminated",
    "close_code",
    "close_reason",
    "handler",
    "mask_outgoing",
    "params",
    "server_terminated",
    "stream",
)


class SlottedProtocol13(WebSocketProtocol13):
    """Tornado's protocol 13, its attributes in slots (``PROTOCOL_SLOTS`` says why), read by ``reader``."""

    close_seen: Callable[[int | None, str | None], None] | None

    # close_seen: control.watch_closes's callback, in a slot rather than a closure replacing ``close``
    # on the instance (a closure, a cell and an instance dict: about 0.3 KiB per connection).
    __slots__ = PROTOCOL_SLOTS + ("close_seen",)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        seen = self.close_seen
        if seen is not None:
            seen(code, reason)
        super().close(code, reason)

    async def _receive_frame_loop(self) -> None:
        # Returns at once: the reads go on in callbacks (reader.FrameReader says why).
        FrameReader(self).start()


_params: dict[tuple[Any, ...], _WebSocketParams] = {}


def slotted_protocol(handler: WebSocketHandler) -> WebSocketProtocol | None:
    """What ``WebSocketHandler.get_websocket_protocol`` returns, as a ``SlottedProtocol13``.

    The parameters are the same for every socket of an application: one
    object is shared (Tornado only reads them) rather than one made per socket.
    """
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    key = (
        handler.ping_interval,
        handler.ping_timeout,
        handler.max_message_size,
        repr(handler.get_compression_options()),
    )
    params = _params.get(key)
    if params is None:
        params = _params[key] = _WebSocketParams(
            ping_interval=handler.ping_interval,
            ping_timeout=handler.ping_timeout,
            max_message_size=handler.max_message_size,
            compression_options=handler.get_compression_options(),
        )
    protocol = SlottedProtocol13(handler, False, params)
    protocol.close_seen = None
    return protocol


class _ReleasedHeaders(HTTPHeaders):
    """The headers of a handshake that is over: empty, and nothing may be added."""

    def add(self, name: str, value: str, *, _chars_are_bytes: bool = True) -> None:
        raise RuntimeError("the handshake's headers were released once the WebSocket opened")

    def __setitem__(self, name: str, value: str) -> None:
        raise RuntimeError("the handshake's headers were released once the WebSocket opened")


RELEASED_HEADERS: HTTPHeaders = _ReleasedHeaders()


def release_handshake(handler: WebSocketHandler) -> None:
    """Let go of what only the handshake needed, so an idle socket holds less; the stream's write queues too.

    A browser's handshake headers (cookies, user agent, languages: 1 to 2
    KiB), the parsed cookies, the response headers already sent and the
    template namespace (``ui``, which Tornado itself drops only at close) and
    the detached HTTP connection's copy of the request headers are
    kept by Tornado for the life of the socket, yet read only before
    ``open``. Call it once the handler has read what it needs from them
    (remote address, name cookie); ``request.remote_ip``, ``host`` and the
    query stay.
    """
    request = handler.request
    request.headers = RELEASED_HEADERS
    connection = request.connection
    if isinstance(connection, HTTP1Connection):  # detached: it writes no more responses that would read them
        connection._request_headers = None
    # The detached HTTP connection and the server's connection object (with
    # their Futures, start lines, context and the request loop's finished
    # Task) are Tornado's only until the upgrade; the handler reads neither after it.
    request.connection = None
    request.server_connection = None
    request.__dict__.pop("_cookies", None)
    handler._headers = RELEASED_HEADERS
    handler.ui = None  # type: ignore[assignment]
    protocol = handler.ws_connection
    if protocol is not None:
        lean_stream(getattr(protocol, "stream", None))
