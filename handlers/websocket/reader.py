"""Reading a client's frames: the protocol's receive loop, taking whatever has arrived in one read.

The loop is callbacks on the reads' Futures, not a coroutine (``FrameReader`` says why).

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
``_handle_message`` for each whole message (waited for, so a client is read no
faster than its messages are handled), a yield to the loop after a burst
(sooner than Tornado's when the frames are small), and
``on_ws_connection_close`` at the end. Added are what RFC 6455
asks and Tornado does not do (rfc6455.py): masking required, close payloads
and codes checked, UTF-8 checked as fragments arrive, and every violation
closed with its code rather than just cut. Compression is never negotiated
by this server (``get_compression_options`` is None), so RSV1 is refused
like the other reserved bits.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import NamedTuple, cast

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


class FrameReader:
    """The protocol's receive loop, as callbacks on the reads' Futures rather than a coroutine.

    Tornado awaits the receive loop at the bottom of the handshake's
    coroutines (the request's ``_execute``, ``get``, ``accept_connection``),
    so while a coroutine read, an idle socket kept that whole chain
    suspended: seven coroutine frames, their Task, and the handshake's
    headers that ``get`` holds in a local, about 4 KiB per connection
    (bench/RESULTS.md, "Idle connections: where each KiB goes"). Started
    from the loop, this returns at once and the chain ends; what stays is
    this object, held by the pending read's callback.

    Every callback runs in one context, the connection's (taken when the
    loop starts, after ``open`` bound the log's fields), as a Task's steps
    all run in the Task's context.
    """

    __slots__ = ("_protocol", "_context", "_kept", "_needed", "_work", "_text", "_data", "_start", "_ended")

    def __init__(self, protocol: WebSocketProtocol13) -> None:
        self._protocol = protocol
        self._context = contextvars.copy_context()
        self._kept: bytearray | None = None  # the start of a frame whose end has not arrived (none on most sockets)
        self._needed = 0  # bytes ``_kept`` must reach before a frame can be whole
        self._work = 0
        self._text = TextCheck()
        self._data = b""  # what the last read brought, cut from ``_start`` on
        self._start = 0
        self._ended = False

    def start(self) -> None:
        self._context.run(self._read)

    def _read(self) -> None:
        protocol = self._protocol
        if protocol.client_terminated:
            self._end()
            return
        try:
            # A Future (typed Awaitable): its callbacks are run by the loop, never from inside read_bytes.
            future = cast("asyncio.Future[bytes]", protocol.stream.read_bytes(READ_AT_MOST, partial=True))
        except StreamClosedError:
            protocol._abort()
            self._end()
            return
        future.add_done_callback(self._on_read, context=self._context)

    def _on_read(self, future: "asyncio.Future[bytes]") -> None:
        try:
            chunk = future.result()  # one call on the common path: the data
        except StreamClosedError:
            self._protocol._abort()
            self._end()
            return
        except asyncio.CancelledError:
            self._end()
            return
        except Exception as error:
            self._failed(error)
            return
        self._protocol._wire_bytes_in += len(chunk)
        if self._kept is not None:
            self._kept += chunk
            if len(self._kept) < self._needed:
                self._read()
                return
            self._data, self._kept = bytes(self._kept), None
        else:
            self._data = chunk
        self._start = 0
        self._cut()

    def _cut(self) -> None:
        """The frames of ``_data`` from ``_start`` on, until one's handling is pending or a yield is due."""
        protocol, data = self._protocol, self._data
        try:
            while not protocol.client_terminated:
                frame = cut_frame(protocol, data, self._start)
                if isinstance(frame, int):  # not all there yet: at least this many bytes are
                    if self._start < len(data):
                        self._kept, self._needed = bytearray(memoryview(data)[self._start :]), frame
                    break
                self._start = frame.end
                handled = take_frame(protocol, frame, self._text)
                self._work += FRAME_COST + len(frame.payload)
                if handled is not None:  # a client is read no faster than its messages are handled
                    handled.add_done_callback(self._on_handled, context=self._context)
                    return
                if self._work >= YIELD_AFTER:
                    self._yield()
                    return
        except Refused as refused:
            refuse(protocol, refused)
            self._end()
            return
        except Exception as error:
            self._failed(error)
            return
        self._data = b""
        self._read()

    def _on_handled(self, handled: "asyncio.Future[None]") -> None:
        # Tornado's Futures (_run_callback) never raise: the error was logged there. The handler's own
        # Task (handle_text) raises here and is logged as Tornado would; either way the connection ends.
        if handled.cancelled():
            self._protocol._abort()
            self._end()
        elif (error := handled.exception()) is not None:
            self._protocol._abort()
            self._failed(error)
        elif self._work >= YIELD_AFTER:
            self._yield()
        else:
            self._cut()

    def _yield(self) -> None:
        """After a burst, the rest of this read waits one turn of the loop, so one client does not hold it."""
        self._work = 0
        asyncio.get_running_loop().call_soon(self._cut, context=self._context)

    def _failed(self, error: BaseException) -> None:
        """A bug, not the client: logged as Tornado logs an error escaping a handler, and the connection ends."""
        self._protocol.handler.log_exception(type(error), error, error.__traceback__)
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._data, self._kept = b"", None
        protocol = self._protocol
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
