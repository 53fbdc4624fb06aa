"""Reading a client's frames: the protocol's receive loop, taking whatever has arrived in one read.

The loop is callbacks, not a coroutine (``FrameReader`` says why).

Tornado's own receive loop (``WebSocketProtocol13``'s) reads a frame in
three or four ``read_bytes`` calls (header, length, mask, payload). After the first,
the rest of the frame waits in the ``IOStream``'s buffer with no read
pending, so the stream stops listening on the socket (``update_handler``,
uvloop's ``remove_reader``), and starts again when the next frame is asked
for (``add_reader``): two changes of the loop's interest in the socket per
message, each a system call
(bench/RESULTS.md, "Measurements formerly in code comments"). Here whatever
has arrived is taken in one read, so the stream keeps listening, and frames
are cut out of what was read (client_frames.py). On a plain socket the read is the
lean stream's own, handed over without a Future (stream.py says what that
saves); otherwise it is ``read_bytes(partial=True)``.

Tornado's checks are kept in Tornado's order (client_frames.py), with Tornado's
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
from typing import cast

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13

from handlers.websocket.client_frames import cut_frame, take_frame
from handlers.websocket.rfc6455 import Refused, TextCheck
from handlers.websocket.stream import READ_AT_MOST, LeanIOStream

YIELD_AFTER = 256 * 1024  # wire bytes, frames counted as FRAME_COST each (Tornado's _YIELD_THRESHOLD)
# Tornado counts a frame as 1 KiB: 256 empty frames between two turns of the
# loop. A frame costs this loop about 6 us however small (cut, unmasked,
# charged), so a ping flood held each turn 1.5 ms per connection, and several
# flooding connections at once delayed everyone's messages by as many
# (bench/RESULTS.md, "Floods"). At 4 KiB a frame: 64 frames, about 0.4 ms.
FRAME_COST = 4 * 1024


class FrameReader:
    """The protocol's receive loop, as callbacks rather than a coroutine: the lean stream's hand-over
    (``take_chunk``) on a plain socket, a read Future's callback otherwise.

    Tornado awaits the receive loop at the bottom of the handshake's
    coroutines (the request's ``_execute``, ``get``, ``accept_connection``),
    so while a coroutine read, an idle socket kept that whole chain
    suspended: seven coroutine frames, their Task, and the handshake's
    headers that ``get`` holds in a local, about 4 KiB per connection
    (bench/RESULTS.md, "Idle connections: where each KiB goes"). Started
    from the loop, this returns at once and the chain ends; what stays is
    this object, held by the stream's ``take_chunk`` or the pending read's callback.

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
        stream = protocol.stream
        if type(stream) is LeanIOStream and not stream._read_buffer_size:  # the common case: nothing buffered
            if stream.closed():
                self._closed()
                return
            stream.take_chunk = self._on_chunk  # the next read's bytes, or b"" at the close (stream.py)
            stream._add_io_state(IOLoop.READ)
            return
        try:
            # A Future (typed Awaitable): its callbacks are run by the loop, never from inside read_bytes.
            future = cast("asyncio.Future[bytes]", protocol.stream.read_bytes(READ_AT_MOST, partial=True))
        except StreamClosedError:
            self._closed()
            return
        future.add_done_callback(self._on_read, context=self._context)

    def _on_chunk(self, chunk: bytes) -> None:
        """What a lean stream read for this reader, in the connection's context; ``b""``: it closed."""
        self._context.run(self._took, chunk)

    def _on_read(self, future: "asyncio.Future[bytes]") -> None:
        try:
            chunk = future.result()  # one call on the common path: the data
        except StreamClosedError:
            self._closed()
            return
        except asyncio.CancelledError:
            self._end()
            return
        except Exception as error:
            self._failed(error)
            return
        self._took(chunk)

    def _took(self, chunk: bytes) -> None:
        if not chunk:
            self._closed()
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
            self._closed()
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

    def _closed(self) -> None:
        """Nothing more can be read: the socket is dropped (no close handshake to wait for), the handler told."""
        self._protocol._abort()
        self._end()

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
