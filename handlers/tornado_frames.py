"""The one place that writes WebSocket frames past Tornado's public API.

``write_message`` wraps every write in a coroutine Task; one Task per
recipient per message is the largest cost of fan-out we control
(bench/RESULTS.md, "Prototype"). So frames go straight to the connection,
valid because server frames are unmasked and this server offers no
compression: to its socket when Tornado has nothing queued for it (the
common case, and a good part of a write's cost saved: no Future, no buffer;
bench/RESULTS.md, "Measurements formerly in code comments"),
else behind what is queued, through its ``IOStream``. This module also watches the protocol's ``close`` to
learn close codes Tornado keeps no note of (1009 for an oversized frame, a
ping timeout).

What it relies on, beyond the public API, is listed in ``RELIED_ON`` and
checked by ``tornado_problems()``; tests/test_tornado_frames.py fails loudly
when a Tornado upgrade changes any of it.
"""

from __future__ import annotations

import enum
import inspect
import struct
from typing import Any, Callable

import tornado.util
from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13, _WebSocketParams

from handlers.frame_reader import receive_frames

PING_TIMED_OUT = "ping timed out"  # the reason Tornado's periodic_ping closes with
PING_TIMEOUT_CODE = 1008  # the close code of a ping timeout, on the wire and in the log alike

RELIED_ON = (
    "WebSocketHandler.ws_connection: the WebSocketProtocol13 of an open socket, or None",
    "WebSocketProtocol13.stream: its IOStream, set once the handshake is accepted",
    "WebSocketProtocol13.is_closing(): true once either side began closing",
    "WebSocketProtocol13.close(code=None, reason=None): replaceable on the instance",
    "WebSocketProtocol13.periodic_ping closes with reason 'ping timed out'",
    "IOStream.write(data) -> Future, resolved once the bytes reached the kernel",
    "IOStream.writing(): true while bytes wait in its buffer; IOStream.socket: the non-blocking socket",
    "IOStream.close(): tears the TCP connection down at once",
    "RequestHandler.ui, ._headers, HTTPServerRequest.headers, ._cookies, HTTP1Connection._request_headers:"
    " unused once a WebSocket is open",
    "HANDLER_SLOTS, PROTOCOL_SLOTS: instance attributes of WebSocketHandler and WebSocketProtocol13, no class ones",
    "WebSocketHandler.get_websocket_protocol: WebSocketProtocol13(self, False, _WebSocketParams(...))",
    "WebSocketProtocol13._received_pong: set True by every pong; write_ping(data) sends one",
    "WebSocketProtocol13._receive_frame_loop(): the receive loop, replaced by frame_reader.receive_frames;"
    " which calls _handle_message(opcode, data) -> Future | None, _abort(), handler.on_ws_connection_close,"
    " keeps _fragmented_message_buffer/_opcode and _wire_bytes_in, reads FIN, RSV_MASK, OPCODE_MASK and"
    " params.max_message_size, and tornado.util._websocket_mask(mask, data)",
    "IOStream.read_bytes(num_bytes, partial=True): whatever has arrived, up to num_bytes",
)

# Tornado's per-connection attributes, kept in slots by our subclasses rather
# than in instance dicts: with 20 to 30 keys each, Tornado's handler and
# protocol dicts are the largest part of an idle connection, a slot one
# pointer (bench/RESULTS.md, "Measurements formerly in code comments"). A
# name Tornado stops using costs a pointer; one it adds lands in the dict as
# before. Method names (Tornado replaces ``write``, ``finish``
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
    """Tornado's protocol 13, its attributes in slots (``PROTOCOL_SLOTS`` says why), read by ``frame_reader``."""

    __slots__ = PROTOCOL_SLOTS

    async def _receive_frame_loop(self) -> None:
        await receive_frames(self)


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
    return SlottedProtocol13(handler, False, params)


class _LastFrame:
    """The frame made last, kept by its payload: a fan-out hands the same bytes object to every member."""

    payload: bytes = b""
    frame: bytes = bytes((0x81, 0))


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame around ``payload`` (RFC 6455, section 5.2).

    Made once per payload object in a row: the members of a room after the
    first get the same frame (the payload is held here, so its identity is
    never reused by another object while the frame is kept).
    """
    if payload is _LastFrame.payload:
        return _LastFrame.frame
    _LastFrame.payload, _LastFrame.frame = payload, _frame(payload)
    return _LastFrame.frame


def _frame(payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class Written(enum.Enum):
    KERNEL = "every byte reached the kernel"
    GONE = "the socket is closing or gone: nothing written"


def write_text(handler: WebSocketHandler, payload: bytes) -> "Future[None] | Written":
    """Write one text frame: ``KERNEL`` when all of it was sent at once, else the Future of what Tornado queued."""
    connection = handler.ws_connection
    if connection is None or connection.is_closing():
        return Written.GONE
    stream: IOStream | None = getattr(connection, "stream", None)
    if stream is None:
        return Written.GONE
    frame = text_frame(payload)
    if not stream.writing() and type(stream) is IOStream:  # not SSLIOStream: its socket takes no plain bytes
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # a broken connection: Tornado's write below meets it and closes the stream
        if sent == len(frame):
            return Written.KERNEL
        frame = frame[sent:]
    try:
        return stream.write(frame)
    except StreamClosedError:
        return Written.GONE


class _ReleasedHeaders(HTTPHeaders):
    """The headers of a handshake that is over: empty, and nothing may be added."""

    def add(self, name: str, value: str, *, _chars_are_bytes: bool = True) -> None:
        raise RuntimeError("the handshake's headers were released once the WebSocket opened")

    def __setitem__(self, name: str, value: str) -> None:
        raise RuntimeError("the handshake's headers were released once the WebSocket opened")


RELEASED_HEADERS: HTTPHeaders = _ReleasedHeaders()


def release_handshake(handler: WebSocketHandler) -> None:
    """Let go of what only the handshake needed, so an idle socket holds less.

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
    request.__dict__.pop("_cookies", None)
    handler._headers = RELEASED_HEADERS
    handler.ui = None  # type: ignore[assignment]


def send_ping(handler: WebSocketHandler) -> bool:
    """Send a ping and forget any earlier pong, as Tornado's ``periodic_ping``; False when the socket is gone."""
    connection = handler.ws_connection
    if not isinstance(connection, WebSocketProtocol13) or connection.is_closing():
        return False
    connection._received_pong = False
    try:
        connection.write_ping(b"")
    except StreamClosedError:
        return False
    return True


def pong_received(handler: WebSocketHandler) -> bool:
    """Whether the client answered since the last ``send_ping`` (Tornado notes every pong)."""
    connection = handler.ws_connection
    return isinstance(connection, WebSocketProtocol13) and connection._received_pong


def aborter(handler: WebSocketHandler) -> Callable[[], None]:
    """A function that tears the TCP connection down at once, taken before a close forgets the stream.

    For peers that will not answer a close frame: one that does not read, one
    that answers no ping. ``WebSocketHandler.close`` drops ``ws_connection``,
    so the stream is looked up here, first.
    """
    connection = handler.ws_connection
    stream: IOStream | None = getattr(connection, "stream", None) if connection is not None else None

    def abort() -> None:
        if stream is not None:
            stream.close()

    return abort


def watch_closes(protocol: WebSocketProtocol, seen: Callable[[int | None, str | None], None]) -> None:
    """Call ``seen(code, reason)`` whenever Tornado (or we) close the protocol, then close it."""
    protocol_close = protocol.close

    def close_noting_code(code: int | None = None, reason: str | None = None) -> None:
        if code is None and reason == PING_TIMED_OUT:
            code = PING_TIMEOUT_CODE  # Tornado would send 1000, as if all were well: the log's code instead
        seen(code, reason)
        protocol_close(code, reason)

    protocol.close = close_noting_code  # type: ignore[method-assign]


def tornado_problems() -> list[str]:
    """What of ``RELIED_ON`` this Tornado no longer offers; empty when all is there."""
    problems: list[str] = []
    checks: list[tuple[Any, str, list[str]]] = [
        (WebSocketProtocol13, "close", ["self", "code", "reason"]),
        (WebSocketProtocol13, "is_closing", ["self"]),
        (WebSocketProtocol13, "write_ping", ["self", "data"]),
        (WebSocketProtocol13, "periodic_ping", ["self"]),
        (IOStream, "write", ["self", "data"]),
        (IOStream, "writing", ["self"]),
        (IOStream, "close", ["self", "exc_info"]),
        (WebSocketHandler, "get_websocket_protocol", ["self"]),
        (WebSocketHandler, "on_ws_connection_close", ["self", "close_code", "close_reason"]),
        (WebSocketProtocol13, "_receive_frame_loop", ["self"]),
        (WebSocketProtocol13, "_handle_message", ["self", "opcode", "data"]),
        (WebSocketProtocol13, "_abort", ["self"]),
        (IOStream, "read_bytes", ["self", "num_bytes", "partial"]),
    ]
    for owner, name, parameters in checks:
        method = getattr(owner, name, None)
        if method is None:
            problems.append(f"{owner.__name__}.{name} is gone")
            continue
        found = list(inspect.signature(method).parameters)
        if found != parameters:
            problems.append(f"{owner.__name__}.{name} takes {found}, not {parameters}")
    if PING_TIMED_OUT not in inspect.getsource(WebSocketProtocol13.periodic_ping):
        problems.append(f"periodic_ping no longer closes with reason {PING_TIMED_OUT!r}")
    for owner, attribute in (
        (RequestHandler, "self.ui ="),
        (RequestHandler, "self._headers ="),
        (HTTPServerRequest, "self._cookies"),
        (HTTP1Connection, "self._request_headers ="),
    ):
        if attribute not in inspect.getsource(owner):
            problems.append(f"{owner.__name__} no longer sets {attribute.removesuffix(' =')}")
    for owner, names in ((WebSocketHandler, HANDLER_SLOTS), (WebSocketProtocol13, PROTOCOL_SLOTS)):
        hidden = [name for name in names if hasattr(owner, name)]
        if hidden:
            problems.append(f"{owner.__name__} has class attributes {hidden}: a slot would hide them")
    if "WebSocketProtocol13(self, False, params)" not in inspect.getsource(WebSocketHandler.get_websocket_protocol):
        problems.append(
            "WebSocketHandler.get_websocket_protocol no longer makes WebSocketProtocol13(self, False, params)"
        )
    params = list(inspect.signature(_WebSocketParams).parameters)
    if params != ["ping_interval", "ping_timeout", "max_message_size", "compression_options"]:
        problems.append(f"_WebSocketParams takes {params}")
    if "self._received_pong = True" not in inspect.getsource(WebSocketProtocol13):
        problems.append("WebSocketProtocol13 no longer notes pongs in _received_pong")
    if "self.stream" not in inspect.getsource(WebSocketProtocol13):
        problems.append("WebSocketProtocol13 no longer keeps its IOStream as .stream")
    problems += _reader_problems()
    return problems


def _reader_problems() -> list[str]:
    """What ``frame_reader`` relies on in Tornado's receive loop that this Tornado no longer has."""
    problems = []
    receive = inspect.getsource(WebSocketProtocol13._receive_frame) + inspect.getsource(WebSocketProtocol13._read_bytes)
    for name in ("_fragmented_message_buffer", "_fragmented_message_opcode", "_wire_bytes_in", "max_message_size"):
        if name not in receive:
            problems.append(f"WebSocketProtocol13's receive loop no longer uses {name}")
    for name in ("FIN", "RSV_MASK", "OPCODE_MASK"):
        if not isinstance(getattr(WebSocketProtocol13, name, None), int):
            problems.append(f"WebSocketProtocol13.{name} is gone")
    if "on_ws_connection_close" not in inspect.getsource(WebSocketProtocol13._receive_frame_loop):
        problems.append("WebSocketProtocol13._receive_frame_loop no longer ends with on_ws_connection_close")
    if not callable(getattr(tornado.util, "_websocket_mask", None)):
        problems.append("tornado.util._websocket_mask is gone")
    return problems
