"""Reading a client's frames: the protocol's receive loop, taking whatever has arrived in one read.

Tornado's own receive loop (``WebSocketProtocol13``'s) reads a frame in
three or four ``read_bytes`` calls (header, length, mask, payload). After the first,
the rest of the frame waits in the ``IOStream``'s buffer with no read
pending, so the stream stops listening on the socket (``update_handler``,
uvloop's ``remove_reader``), and starts again when the next frame is asked
for (``add_reader``): two changes of the loop's interest in the socket per
message, each a system call
(bench/RESULTS.md, "Measurements formerly in code comments"). Here the stream is asked for whatever has arrived
(``partial=True``): its buffer is empty after every read, so it keeps
listening, and frames are cut out of what was read.

Tornado's checks are kept in Tornado's order (reserved bits, control
frames short and final, ``max_message_size`` against the length before the
payload arrives, continuation frames), with the state on the protocol that
Tornado keeps (``_fragmented_message_*``, ``_wire_bytes_in``), Tornado's
``_handle_message`` for each whole message (awaited, so a client is read no
faster than its messages are handled), a yield to the loop after a burst
(sooner than Tornado's when the frames are small), and ``on_ws_connection_close`` at the end. Added are what RFC 6455
asks and Tornado does not do (rfc6455.py): masking required, close payloads
and codes checked, UTF-8 checked as fragments arrive, and every violation
closed with its code rather than just cut. Compression is never negotiated
by this server (``get_compression_options`` is None), so RSV1 is refused
like the other reserved bits.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from tornado.iostream import StreamClosedError
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

READ_AT_MOST = 64 * 1024  # bytes per read: what a read of Tornado's own would take in
YIELD_AFTER = 256 * 1024  # wire bytes, frames counted as FRAME_COST each (Tornado's _YIELD_THRESHOLD)
# Tornado counts a frame as 1 KiB: 256 empty frames between two turns of the
# loop. A frame costs this loop about 6 us however small (cut, unmasked,
# charged), so a ping flood held each turn 1.5 ms per connection, and several
# flooding connections at once delayed everyone's messages by as many
# (bench/RESULTS.md, "Floods"). At 4 KiB a frame: 64 frames, about 0.4 ms.
FRAME_COST = 4 * 1024


class Frame(NamedTuple):
    final: bool
    opcode: int
    payload: bytes
    end: int  # where the next frame starts in the data read


async def receive_frames(protocol: WebSocketProtocol13) -> None:
    """The protocol's receive loop, until the client or the server ends the connection."""
    kept: bytearray | None = None  # the start of a frame whose end has not arrived (none on most sockets)
    needed = 0  # bytes ``kept`` must reach before a frame can be whole
    work = 0
    text = TextCheck()
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
                handled = take_frame(protocol, frame, text)
                if handled is not None:
                    await handled
                work += FRAME_COST + len(frame.payload)
                if work >= YIELD_AFTER:  # one client's burst does not hold the loop
                    work = 0
                    await asyncio.sleep(0)
    except Refused as refused:
        refuse(protocol, refused)
    except StreamClosedError:
        protocol._abort()
    finally:
        protocol.handler.on_ws_connection_close(protocol.close_code, protocol.close_reason)


def refuse(protocol: WebSocketProtocol13, refused: Refused) -> None:
    """Close with the refusal's code, then end the TCP connection without waiting for the client's close."""
    protocol.client_terminated = True  # nothing more is read: Tornado's close then closes the stream at once
    protocol.close(refused.code, refused.reason)
    protocol._abort()  # in case the close could not be written


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
    return protocol._handle_message(opcode, payload)
