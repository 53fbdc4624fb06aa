"""Reading a client's frames: Tornado's receive loop, taking whatever has arrived in one read.

Tornado's ``WebSocketProtocol13._receive_frame`` reads a frame in three or
four ``read_bytes`` calls (header, length, mask, payload). After the first,
the rest of the frame waits in the ``IOStream``'s buffer with no read
pending, so the stream stops listening on the socket (``update_handler``,
uvloop's ``remove_reader``), and starts again when the next frame is asked
for (``add_reader``): about 14 µs of CPU each, twice per message, measured
(bench/RESULTS.md, "The inbound path"). Here the stream is asked for whatever has arrived
(``partial=True``): its buffer is empty after every read, so it keeps
listening, and frames are cut out of what was read.

Everything else is Tornado's: the same checks in the same order (reserved
bits, control frames short and final, ``max_message_size`` against the
length before the payload arrives, continuation frames), the same state on
the protocol (``_fragmented_message_*``, ``_wire_bytes_in``), the same
``_handle_message`` for each whole message (awaited, so a client is read no
faster than its messages are handled), the same yield to the loop after a
burst, and ``on_ws_connection_close`` at the end. Compression is never
negotiated by this server (``get_compression_options`` is None), so there is
no RSV1 to honour.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from tornado.iostream import StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

READ_AT_MOST = 64 * 1024  # bytes per read: what a read of Tornado's own would take in
YIELD_AFTER = 256 * 1024  # wire bytes, frames counted as 1 KiB each (Tornado's _YIELD_THRESHOLD)
FRAME_COST = 1024


class Frame(NamedTuple):
    final: bool
    opcode: int
    payload: bytes
    end: int  # where the next frame starts in the data read


class Refused(Exception):
    """A frame Tornado would abort the connection for (or close with 1009, then abort)."""


async def receive_frames(protocol: WebSocketProtocol13) -> None:
    """The protocol's receive loop, until the client or the server ends the connection."""
    kept: bytearray | None = None  # the start of a frame whose end has not arrived (none on most sockets)
    needed = 0  # bytes ``kept`` must reach before a frame can be whole
    work = 0
    try:
        while not protocol.client_terminated:
            chunk = await protocol.stream.read_bytes(READ_AT_MOST, partial=True)
            protocol._wire_bytes_in += len(chunk)
            if kept is not None:
                kept += chunk
                if len(kept) < needed:
                    continue
                data, kept = bytes(kept), None
            else:
                data = chunk
            start = 0
            while not protocol.client_terminated:
                frame = cut_frame(protocol, data, start)
                if isinstance(frame, int):  # not all there yet: at least this many bytes are
                    if start < len(data):
                        kept, needed = bytearray(memoryview(data)[start:]), frame
                    break
                start = frame.end
                handled = take_frame(protocol, frame)
                if handled is not None:
                    await handled
                work += FRAME_COST + len(frame.payload)
                if work >= YIELD_AFTER:  # one client's burst does not hold the loop
                    work = 0
                    await asyncio.sleep(0)
    except (Refused, StreamClosedError):
        protocol._abort()
    finally:
        protocol.handler.on_ws_connection_close(protocol.close_code, protocol.close_reason)


def cut_frame(protocol: WebSocketProtocol13, data: bytes, start: int) -> Frame | int:
    """The frame at ``start`` (unmasked), or how many bytes from ``start`` it needs; raises Refused."""
    have = len(data) - start
    if have < 2:
        return 2
    first, second = data[start], data[start + 1]
    opcode = first & protocol.OPCODE_MASK
    if first & protocol.RSV_MASK:
        raise Refused("reserved bits set: an extension nobody negotiated")
    length = second & 0x7F
    if opcode & 0x8 and length >= 126:
        raise Refused("a control frame over 125 bytes")
    head = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    if have < head:
        return head
    if length == 126:
        length = int.from_bytes(data[start + 2 : start + 4], "big")
    elif length == 127:
        length = int.from_bytes(data[start + 2 : start + 10], "big")
    fragments = protocol._fragmented_message_buffer
    if length + (len(fragments) if fragments is not None else 0) > protocol.params.max_message_size:
        protocol.close(1009, "message too big")
        raise Refused("message too big")
    masked = second & 0x80
    body = start + head + (4 if masked else 0)
    end = body + length
    if len(data) < end:
        return end - start
    payload = data[body:end]
    if masked:
        payload = _websocket_mask(data[body - 4 : body], payload)
    return Frame(bool(first & protocol.FIN), opcode, payload, end)


def _free() -> bool:
    return True


def take_frame(protocol: WebSocketProtocol13, frame: Frame) -> "asyncio.Future[None] | None":
    """Tornado's handling of one frame: fragments gathered, a whole message handed to ``_handle_message``."""
    opcode, payload = frame.opcode, frame.payload
    if opcode & 0x8:  # control frames may come between the fragments of a message
        if not frame.final:
            raise Refused("a fragmented control frame")
        if opcode != 0x8 and not getattr(protocol.handler, "charge_control", _free)():
            if protocol.server_terminated:  # closed for it (1008): read nothing more of a flooder
                raise Refused("pings or pongs past the refusal budget")
            return None  # a ping or pong past the frame limits: not answered, not noted
    elif opcode == 0:
        fragments = protocol._fragmented_message_buffer
        if fragments is None:
            raise Refused("a continuation of nothing")
        fragments.extend(payload)
        if not frame.final:
            return None
        opcode, payload = int(protocol._fragmented_message_opcode or 0), bytes(fragments)  # Tornado types it None
        protocol._fragmented_message_buffer = None
    else:
        if protocol._fragmented_message_buffer is not None:
            raise Refused("a new message before the last one ended")
        if not frame.final:
            protocol._fragmented_message_opcode = opcode  # type: ignore[assignment]  # as Tornado's own
            protocol._fragmented_message_buffer = bytearray(payload)
            return None
    return protocol._handle_message(opcode, payload)
