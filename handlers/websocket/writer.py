"""Server text frames written straight to the connection, past ``write_message``.

``write_message`` wraps every write in a coroutine Task; one Task per
recipient per message was the largest cost of fan-out we control
(bench/RESULTS.md, "Prototype"). So frames go straight to the connection,
valid because server frames are unmasked and this server offers no
compression: to its socket when Tornado has nothing queued for it (the
common case, and a third of a write's cost saved: no Future, no buffer),
else behind what is queued, through its ``IOStream``.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from tornado.concurrent import Future
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler

from handlers.websocket.stream import PLAIN_STREAMS


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


# Module globals: on Python 3.11 reading an Enum member off its class costs 0.18 µs, and there are
# three such reads per delivery.
KERNEL: Final = Written.KERNEL
GONE: Final = Written.GONE


def write_text(handler: WebSocketHandler, payload: bytes) -> "Future[None] | Written":
    """Write one text frame: ``KERNEL`` when all of it was sent at once, else the Future of what Tornado queued.

    Once per recipient per message, so Tornado's checks are read off their
    fields here (``is_closing``, ``closed``, ``writing``), not called: with
    the module globals below, 0.74 -> 0.55 µs of Python a call (micro) (bench/RESULTS.md, "CPU per delivery").
    """
    connection = handler.ws_connection
    if connection is None or connection.client_terminated or connection.server_terminated:
        return GONE
    stream: IOStream | None = getattr(connection, "stream", None)
    if stream is None or stream._closed:
        return GONE
    frame = text_frame(payload)
    if not stream._write_buffer and type(stream) in PLAIN_STREAMS:  # not SSLIOStream: its socket takes no plain bytes
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # a broken connection: Tornado's write below meets it and closes the stream
        if sent == len(frame):
            return KERNEL
        frame = frame[sent:]
    try:
        return stream.write(frame)
    except StreamClosedError:
        return GONE
