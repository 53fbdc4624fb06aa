"""The one place that writes WebSocket frames past Tornado's public API.

``write_message`` wraps every write in a coroutine Task; one Task per
recipient per message was the largest cost of fan-out we control
(bench/RESULTS.md, "Prototype"). So frames go straight to the connection,
valid because server frames are unmasked and this server offers no
compression: to its socket when Tornado has nothing queued for it (the
common case, and a third of a write's cost saved: no Future, no buffer),
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

from tornado.concurrent import Future
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

PING_TIMED_OUT = "ping timed out"  # the reason Tornado's periodic_ping closes with

RELIED_ON = (
    "WebSocketHandler.ws_connection: the WebSocketProtocol13 of an open socket, or None",
    "WebSocketProtocol13.stream: its IOStream, set once the handshake is accepted",
    "WebSocketProtocol13.is_closing(): true once either side began closing",
    "WebSocketProtocol13.close(code=None, reason=None): replaceable on the instance",
    "WebSocketProtocol13.periodic_ping closes with reason 'ping timed out'",
    "IOStream.write(data) -> Future, resolved once the bytes reached the kernel",
    "IOStream.writing(): true while bytes wait in its buffer; IOStream.socket: the non-blocking socket",
    "IOStream.close(): tears the TCP connection down at once",
)


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
    if not stream.writing() and not isinstance(stream, SSLIOStream):
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
        seen(code, reason)
        protocol_close(code, reason)

    protocol.close = close_noting_code  # type: ignore[method-assign]


def tornado_problems() -> list[str]:
    """What of ``RELIED_ON`` this Tornado no longer offers; empty when all is there."""
    problems: list[str] = []
    checks: list[tuple[Any, str, list[str]]] = [
        (WebSocketProtocol13, "close", ["self", "code", "reason"]),
        (WebSocketProtocol13, "is_closing", ["self"]),
        (WebSocketProtocol13, "periodic_ping", ["self"]),
        (IOStream, "write", ["self", "data"]),
        (IOStream, "writing", ["self"]),
        (IOStream, "close", ["self", "exc_info"]),
        (WebSocketHandler, "get_websocket_protocol", ["self"]),
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
    if "self.stream" not in inspect.getsource(WebSocketProtocol13):
        problems.append("WebSocketProtocol13 no longer keeps its IOStream as .stream")
    return problems
