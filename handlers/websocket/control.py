"""Pings, pongs, closes and aborts of an open socket, for the handler and the process's ping wheel.

The ping wheel (handlers/pings.py) pings every socket itself, so Tornado's
own ping task never runs; what it needs of Tornado is the pong note
(``_received_pong``, set by every pong Tornado reads). ``watch_closes``
learns the close codes Tornado keeps no note of (1009 for an oversized
frame, 1002 or 1007 for a protocol violation, a ping timeout).
"""

from __future__ import annotations

from typing import Callable

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

from handlers.websocket.slots import SlottedProtocol13

PING_TIMED_OUT = "ping timed out"  # the reason a socket that answered no ping is closed with
PING_TIMEOUT_CODE = 1008  # its close code, on the wire and in the log alike


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
    if isinstance(protocol, SlottedProtocol13):
        protocol.close_seen = seen  # its close calls it
        return
    protocol_close = protocol.close

    def close_noting_code(code: int | None = None, reason: str | None = None) -> None:
        seen(code, reason)
        protocol_close(code, reason)

    protocol.close = close_noting_code  # type: ignore[method-assign]
