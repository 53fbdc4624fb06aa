"""One client frame: cut out of the bytes read, checked, and a whole message handed on.

The per-frame half of the receive loop (reader.py is the loop). Tornado's
checks in Tornado's order, on the state Tornado keeps on the protocol
(``_fragmented_message_*``), with RFC 6455's that Tornado does not make
(rfc6455.py); a violation raises ``Refused`` with its close code.
"""

from __future__ import annotations

import asyncio
import sys
from typing import NamedTuple

from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

from handlers.websocket.rfc6455 import (
    CLOSE,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    KNOWN_OPCODES,
    TEXT,
    Refused,
    TextCheck,
    check_close,
)


class Frame(NamedTuple):
    final: bool
    opcode: int
    payload: bytes
    end: int  # where the next frame starts in the data read


def cut_frame(protocol: WebSocketProtocol13, data: bytes, start: int) -> Frame | int:
    """The frame at ``start`` (unmasked), or how many bytes from ``start`` it needs; raises Refused."""
    have = len(data) - start
    if have < 2:
        return 2
    first, second = data[start], data[start + 1]
    opcode = first & protocol.OPCODE_MASK
    if first & protocol.RSV_MASK:
        raise Refused(CLOSE_PROTOCOL_ERROR, "reserved bits set: an extension nobody negotiated")
    if not second & 0x80:
        raise Refused(CLOSE_PROTOCOL_ERROR, "an unmasked client frame")
    length = second & 0x7F
    if opcode & 0x8 and length >= 126:
        raise Refused(CLOSE_PROTOCOL_ERROR, "a control frame over 125 bytes")
    head = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    if have < head:
        return head
    if length == 126:
        length = int.from_bytes(data[start + 2 : start + 4], "big")
    elif length == 127:
        length = int.from_bytes(data[start + 2 : start + 10], "big")
    fragments = protocol._fragmented_message_buffer
    if length + (len(fragments) if fragments is not None else 0) > protocol.params.max_message_size:
        raise Refused(CLOSE_TOO_BIG, "message too big")
    body = start + head + 4
    end = body + length
    if len(data) < end:
        return end - start
    payload = _websocket_mask(data[body - 4 : body], data[body:end])
    return Frame(bool(first & protocol.FIN), opcode, payload, end)


def _free() -> bool:
    return True


def take_frame(protocol: WebSocketProtocol13, frame: Frame, text: TextCheck) -> "asyncio.Future[None] | None":
    """One frame: fragments gathered and checked, a whole message handed to Tornado's ``_handle_message``."""
    opcode, payload = frame.opcode, frame.payload
    if opcode not in KNOWN_OPCODES:
        raise Refused(CLOSE_PROTOCOL_ERROR, "a reserved opcode")
    if opcode & 0x8:  # control frames may come between the fragments of a message
        if not frame.final:
            raise Refused(CLOSE_PROTOCOL_ERROR, "a fragmented control frame")
        if opcode == CLOSE:
            check_close(payload)
        elif not getattr(protocol.handler, "charge_control", _free)():
            if protocol.server_terminated:  # closed for it (1008): read nothing more of a flooder
                raise Refused(CLOSE_POLICY_VIOLATION, "pings or pongs past the refusal budget")
            return None  # a ping or pong past the frame limits: not answered, not noted
    elif opcode == 0:
        fragments = protocol._fragmented_message_buffer
        if fragments is None:
            raise Refused(CLOSE_PROTOCOL_ERROR, "a continuation of nothing")
        text.more(payload, final=frame.final)
        fragments.extend(payload)
        if not frame.final:
            return None
        opcode, payload = int(protocol._fragmented_message_opcode or 0), bytes(fragments)  # Tornado types it None
        protocol._fragmented_message_buffer = None
    else:
        if protocol._fragmented_message_buffer is not None:
            raise Refused(CLOSE_PROTOCOL_ERROR, "a new message before the last one ended")
        if not frame.final:
            text.first(opcode, payload)
            protocol._fragmented_message_opcode = opcode  # type: ignore[assignment]  # as Tornado's own
            protocol._fragmented_message_buffer = bytearray(payload)
            return None
        if opcode == TEXT:
            text.whole(payload)
    if opcode == TEXT:
        return handle_text(protocol, payload)
    return protocol._handle_message(opcode, payload)


def handle_text(protocol: WebSocketProtocol13, payload: bytes) -> "asyncio.Future[None] | None":
    """A whole text message to the handler's ``on_message``, as Tornado's ``_handle_message`` does it,
    less its wrapping: the coroutine becomes a Task and that is what the reader waits on (``_on_handled``
    logs its error). Tornado's adds a Future, a closure and a ``convert_yielded`` dispatch per message
    (bench/RESULTS.md, "CPU per delivery"). The payload's UTF-8 was checked (``TextCheck``); this server
    negotiates no compression.
    """
    if protocol.client_terminated:
        return None
    protocol._message_bytes_in += len(payload)
    try:
        result = protocol.handler.on_message(payload.decode("utf-8"))
    except Exception:
        protocol.handler.log_exception(*sys.exc_info())
        protocol._abort()
        return None
    if result is None:
        return None
    if asyncio.iscoroutine(result):
        return asyncio.get_running_loop().create_task(result)
    return asyncio.ensure_future(result)
