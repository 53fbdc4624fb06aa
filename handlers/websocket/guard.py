"""What this package takes from Tornado beyond its public API, and a check that this Tornado still offers it.

Every private name the package uses is in ``PRIVATE_NAMES``; tests/test_layout.py
refuses private Tornado names anywhere outside the package. ``tornado_problems``
checks what is relied on by signatures, attributes and behaviour of objects
made here, never by Tornado's source text, so a patch release that only
reformats or refactors passes, and one that changes what we use fails the
check (tests/test_websocket_writer.py, and ``server.py`` at start-up).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import socket
from types import SimpleNamespace
from typing import Any, Callable

import tornado.util
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.iostream import IOStream, _StreamBuffer
from tornado.tcpserver import TCPServer
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler, WebSocketProtocol13, _WebSocketParams

from handlers.websocket.slots import HANDLER_SLOTS, PROTOCOL_SLOTS
from handlers.websocket.stream import LeanIOStream, lean_stream

# Each private name, read or written by this package, and what for.
PRIVATE_NAMES: dict[str, str] = {
    "_WebSocketParams": "slots.slotted_protocol: one shared parameters object per application",
    "_websocket_mask": "client_frames: unmasking client payloads (tornado.util)",
    "_receive_frame_loop": "slots.SlottedProtocol13: the receive loop, replaced by reader.FrameReader",
    "_handle_message": "client_frames: Tornado's handling of a whole message, a close, a ping or a pong",
    "_abort": "reader: ending the TCP connection after a refused frame or a closed stream",
    "_fragmented_message_buffer": "client_frames: a fragmented message gathered where Tornado gathers it",
    "_fragmented_message_opcode": "client_frames: the opcode of that message",
    "_wire_bytes_in": "reader: bytes read, counted as Tornado counts them",
    "_received_pong": "control: the ping wheel's pong note",
    "_request_headers": "slots.release_handshake: the detached HTTP connection's copy of the headers",
    "_headers": "slots.release_handshake: the response headers already sent",
    "_cookies": "slots.release_handshake: the handshake's parsed cookies",
    "_sockets": "accept.GuardedHTTPServer: the listening sockets, as TCPServer.stop closes them",
    "_handlers": "accept.GuardedHTTPServer: the functions that stop accepting, as TCPServer.stop calls them",
    "_handle_connection": "accept.GuardedHTTPServer: what TCPServer does with an accepted socket",
    "_StreamBuffer": "stream.LeanIOStream: the write buffer, made at the first write that queues",
    "_write_buffer": "stream.lean_stream: the stream's write buffer, shared and empty until then",
    "_write_futures": "stream.lean_stream: the deque of the writes' Futures, likewise",
    "_closed": "writer.write_text: whether the stream is closed, read per delivery rather than through closed()",
    "_handle_write": "guard: the lean stream's check steps a queued write by hand, without a running loop",
    "_handle_read": "stream.LeanIOStream: a readable socket's bytes straight to the reader that waits",
    "_signal_closed": "stream.LeanIOStream: a close told to the reader that waits, as a failed read would be",
    "_read_future": "stream.LeanIOStream: a read of Tornado's own pending, which goes first",
    "_read_buffer_size": "stream, reader: bytes Tornado buffered, which go first",
    "_add_io_state": "reader: interest in the socket's readiness, kept while the reader waits",
}  # plus the attribute names in slots.HANDLER_SLOTS and slots.PROTOCOL_SLOTS, checked below

RELIED_ON = (
    "WebSocketHandler.ws_connection: the WebSocketProtocol13 of an open socket, or None",
    "WebSocketProtocol13(handler, mask_outgoing, params), _WebSocketParams(ping_interval, ping_timeout,"
    " max_message_size, compression_options); FIN, RSV_MASK, OPCODE_MASK",
    "WebSocketProtocol13 instance attributes: stream, params, handler, client_terminated, close_code,"
    " close_reason, _fragmented_message_buffer/_opcode, _wire_bytes_in, _received_pong",
    "WebSocketProtocol13.close(code, reason) replaceable on the instance; is_closing(); write_ping(data);"
    " _handle_message(opcode, data) -> Future | None (a pong sets _received_pong); _abort();"
    " async _receive_frame_loop()",
    "WebSocketHandler.get_websocket_protocol(), on_ws_connection_close(close_code, close_reason)",
    "IOStream(socket, ...), write(data) -> Future, writing(), close(exc_info), read_bytes(num_bytes, partial)",
    "RequestHandler instance attributes ui and _headers; HTTPServerRequest._cookies once cookies are read;"
    " HTTP1Connection._request_headers",
    "HANDLER_SLOTS, PROTOCOL_SLOTS: no class attributes of WebSocketHandler or WebSocketProtocol13 by those names",
    "TCPServer instance dicts _sockets and _handlers; _handle_connection(connection, address); add_sockets(sockets)",
    "tornado.util._websocket_mask(mask, data): data XOR the 4-byte mask, repeated",
    "IOStream._write_buffer (a _StreamBuffer()) and _write_futures (a deque) are its only write queues:"
    " a stream with empty ones in their place writes, queues and closes",
    "IOStream._handle_read() on a readable socket, _signal_closed() at the close, _read_future,"
    " _read_buffer_size, _add_io_state(IOLoop.READ): a lean stream hands its reads and its close to take_chunk",
)

_SIGNATURES: list[tuple[Any, str, list[str]]] = [
    (WebSocketProtocol13, "__init__", ["self", "handler", "mask_outgoing", "params"]),
    (WebSocketProtocol13, "close", ["self", "code", "reason"]),
    (WebSocketProtocol13, "is_closing", ["self"]),
    (WebSocketProtocol13, "write_ping", ["self", "data"]),
    (WebSocketProtocol13, "_receive_frame_loop", ["self"]),
    (WebSocketProtocol13, "_handle_message", ["self", "opcode", "data"]),
    (WebSocketProtocol13, "_abort", ["self"]),
    (WebSocketHandler, "get_websocket_protocol", ["self"]),
    (WebSocketHandler, "on_ws_connection_close", ["self", "close_code", "close_reason"]),
    (IOStream, "write", ["self", "data"]),
    (IOStream, "writing", ["self"]),
    (IOStream, "close", ["self", "exc_info"]),
    (IOStream, "read_bytes", ["self", "num_bytes", "partial"]),
    (TCPServer, "_handle_connection", ["self", "connection", "address"]),
    (TCPServer, "add_sockets", ["self", "sockets"]),
]


def tornado_problems() -> list[str]:
    """What of ``RELIED_ON`` this Tornado no longer offers; empty when all is there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # outside a loop (start-up, a test): the objects built here make Futures
        return asyncio.run(_problems_in_a_loop())
    return _problems()


async def _problems_in_a_loop() -> list[str]:
    return _problems()


def _problems() -> list[str]:
    problems = _signature_problems()
    for check in (_protocol_problems, _handshake_problems, _server_problems, _mask_problems, _stream_problems):
        try:
            problems += check()
        except Exception as error:  # a changed constructor: say which check could not run
            problems.append(f"{check.__name__[1:]}: {type(error).__name__}: {error}")
    for owner, names in ((WebSocketHandler, HANDLER_SLOTS), (WebSocketProtocol13, PROTOCOL_SLOTS)):
        hidden = [name for name in names if hasattr(owner, name)]
        if hidden:
            problems.append(f"{owner.__name__} has class attributes {hidden}: a slot would hide them")
    return problems


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _signature_problems() -> list[str]:
    problems = []
    for owner, name, parameters in _SIGNATURES:
        method = getattr(owner, name, None)
        if method is None:
            problems.append(f"{owner.__name__}.{name} is gone")
        elif (found := _parameters(method)) != parameters:
            problems.append(f"{owner.__name__}.{name} takes {found}, not {parameters}")
    if not inspect.iscoroutinefunction(getattr(WebSocketProtocol13, "_receive_frame_loop", None)):
        problems.append("WebSocketProtocol13._receive_frame_loop is no coroutine function")
    if (found := _parameters(IOStream.__init__)[:2]) != ["self", "socket"]:
        problems.append(f"IOStream takes {found} first, not a socket")
    params = _parameters(_WebSocketParams)
    if params != ["ping_interval", "ping_timeout", "max_message_size", "compression_options"]:
        problems.append(f"_WebSocketParams takes {params}")
    return problems


def _missing(owner: str, instance: object, names: tuple[str, ...]) -> list[str]:
    return [f"{owner} has no attribute {name}" for name in names if not hasattr(instance, name)]


def _protocol_problems() -> list[str]:
    """A protocol made as slots.slotted_protocol makes it, with a handler that only takes a pong."""
    handler = SimpleNamespace(on_pong=lambda data: None, log_exception=lambda *info: None)
    protocol = WebSocketProtocol13(handler, False, _WebSocketParams())
    names: tuple[str, ...] = ("stream", "params", "handler", "client_terminated", "server_terminated", "close_code")
    names += ("close_reason",)
    names += ("_fragmented_message_buffer", "_fragmented_message_opcode", "_wire_bytes_in", "_received_pong")
    problems = _missing("WebSocketProtocol13", protocol, names)
    problems += [f"WebSocketProtocol13.{name} is no int" for name in ("FIN", "RSV_MASK", "OPCODE_MASK")
                 if not isinstance(getattr(WebSocketProtocol13, name, None), int)]  # fmt: skip
    if not problems:
        protocol._handle_message(0xA, b"")
        if protocol._received_pong is not True:
            problems.append("WebSocketProtocol13 no longer notes a pong in _received_pong")
    return problems


def _handshake_problems() -> list[str]:
    """The handshake's objects hold what slots.release_handshake lets go of, by the names it uses."""
    connection = SimpleNamespace(set_close_callback=lambda callback: None, context=None)
    headers = HTTPHeaders({"Host": "localhost", "Cookie": "a=b"})
    start = RequestStartLine("GET", "/", "HTTP/1.1")
    request = HTTPServerRequest(start_line=start, headers=headers, connection=connection)  # type: ignore[arg-type]
    problems = []
    if request.cookies and "_cookies" not in vars(request):
        problems.append("HTTPServerRequest no longer keeps parsed cookies in _cookies")
    problems += _missing("RequestHandler", RequestHandler(Application(), request), ("ui", "_headers"))
    stream = SimpleNamespace(set_close_callback=lambda callback: None, max_buffer_size=1)
    problems += _missing("HTTP1Connection", HTTP1Connection(stream, False), ("_request_headers",))  # type: ignore[arg-type]
    return problems


def _server_problems() -> list[str]:
    server = HTTPServer(lambda request: None)
    names = ("_sockets", "_handlers")
    return [f"TCPServer.{name} is no dict" for name in names if not isinstance(getattr(server, name, None), dict)]


def _mask_problems() -> list[str]:
    mask = getattr(tornado.util, "_websocket_mask", None)
    if not callable(mask) or mask(b"\x01\x02\x03\x04", b"\x00\x00\x00\x00\xff") != b"\x01\x02\x03\x04\xfe":
        return ["tornado.util._websocket_mask(mask, data) no longer unmasks"]
    return []


def _stream_problems() -> list[str]:
    """A lean stream on a socket pair: idle, it closes; written past what the kernel takes, it queues and sends all."""
    problems = []
    for data in (b"", b"x" * 2_000_000):
        near, far = socket.socketpair()
        far.setblocking(False)
        stream = IOStream(near)
        if not isinstance(vars(stream).get("_write_buffer"), _StreamBuffer):
            problems.append("IOStream keeps no _StreamBuffer in _write_buffer")
        if not isinstance(vars(stream).get("_write_futures"), collections.deque):
            problems.append("IOStream keeps no deque in _write_futures")
        lean_stream(stream)
        if data and (not isinstance(stream, LeanIOStream) or not _sent_whole(stream, far, data)):
            problems.append("a lean IOStream no longer queues and sends what the kernel did not take")
        stream.close()
        far.close()
    return problems + _direct_read_problems()


def _direct_read_problems() -> list[str]:
    """A lean stream with a taker: what the socket brought goes to it, and the peer's close closes the stream."""
    near, far = socket.socketpair()
    stream = IOStream(near)
    lean_stream(stream)
    taken: list[bytes] = []
    stream.take_chunk = taken.append  # type: ignore[attr-defined]
    far.sendall(b"frame")
    stream._handle_read()
    far.close()
    stream.take_chunk = taken.append  # type: ignore[attr-defined]
    stream._handle_read()
    problems = []
    if taken != [b"frame"]:
        problems.append(f"a lean stream's read handed over {taken}, not the bytes sent")
    if not stream.closed():
        problems.append("a lean stream did not close when its peer did")
    return problems


def _sent_whole(stream: IOStream, far: socket.socket, data: bytes) -> bool:
    """Write ``data`` (more than the socket pair's buffers hold) and drain it, stepping the writes by hand."""
    stream.write(data)
    if not stream.writing():
        return False
    received = 0
    while received < len(data):
        try:
            received += len(far.recv(1 << 20))
        except BlockingIOError:
            stream._handle_write()
    return received == len(data) and not stream.writing()
