"""An open socket's ``IOStream``: no write queues until a write has to queue, and reads handed over directly.

Tornado's ``IOStream`` makes, per connection, a write buffer (``_StreamBuffer``
around a deque) and a deque of the writes' Futures: an empty deque is 760
bytes, so 1.5 KiB of every idle connection (bench/RESULTS.md, "Idle
connections: where each KiB goes"). Frames go straight to the socket
(writer.py); only a frame the kernel does not take whole is queued, and most
sockets never queue one. Until then both queues are one shared empty object,
and the first write that queues makes the real ones.

A read through Tornado costs, per client message, a zeroed 64 KiB bytearray
that is copied into the read buffer and out again, a Future whose callback
waits a turn of the loop, and, when the reader asks for the next message, a
second ``recv`` that finds nothing (``_try_inline_read``). While the reader
(reader.FrameReader) waits with nothing buffered, it leaves ``take_chunk``
here instead: the socket's readiness is answered with one ``recv`` whose
bytes go to it at once, and a close reaches it as ``b""``. While a message
is being handled it leaves none, and Tornado's own read takes over: one
chunk buffered, then no more interest in the socket until the reader asks,
so a client is still read no faster than its messages are handled.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from tornado.concurrent import Future
from tornado.iostream import IOStream, _StreamBuffer


class _NoWrites:
    """Both queues of a stream that has queued nothing: empty, shared by every such stream, never added to.

    Answers what ``IOStream`` asks of an empty write buffer and an empty deque
    of Futures when it is not writing (its length, truth, items; ``clear``
    at the close); ``LeanIOStream.write`` replaces it before anything is added.
    """

    __slots__ = ()

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def clear(self) -> None:
        return None


NO_WRITES: Any = _NoWrites()

READ_AT_MOST = 64 * 1024  # bytes per read, on either path: what a read of Tornado's own takes in (read_chunk_size)


class LeanIOStream(IOStream):
    """``IOStream`` whose write queues are made by the first write that needs them, and whose reads
    go straight to ``take_chunk`` when one waits."""

    # Class default: no taker, Tornado's own reads. Set on the instance by the reader while it waits
    # with nothing buffered, cleared here before each hand-over (so set again for the next chunk).
    take_chunk: Callable[[bytes], None] | None = None

    def _handle_read(self) -> None:
        take = self.take_chunk
        if take is None or self._read_future is not None or self._read_buffer_size:
            super()._handle_read()
            return
        try:
            chunk = self.socket.recv(READ_AT_MOST)
        except BlockingIOError:
            return
        except OSError as error:  # a reset among them: closed, as Tornado closes on it
            self.close(exc_info=error)
            return
        if not chunk:
            self.close()
            return
        self.take_chunk = None
        take(chunk)

    def _signal_closed(self) -> None:
        # Before Tornado's own: a pending read's Future fails ahead of the close callback, so its reader
        # ends (and sets the close code) before the handler hears of the close; a waiting taker likewise.
        take = self.take_chunk
        if take is not None:
            self.take_chunk = None
            self.io_loop.add_callback(take, b"")
        super()._signal_closed()

    def write(self, data: bytes | memoryview) -> "Future[None]":
        if self._write_futures is NO_WRITES:
            self._write_buffer = _StreamBuffer()
            self._write_futures = collections.deque()
        return super().write(data)


def lean_stream(stream: object) -> None:
    """Give an open WebSocket's plain ``IOStream`` the shared empty queues, when nothing is queued on it."""
    if type(stream) is not IOStream or stream.writing() or stream._write_futures:
        return  # an SSLIOStream, or one with a write still queued: left as it is
    stream.__class__ = LeanIOStream
    stream._write_buffer = NO_WRITES
    stream._write_futures = NO_WRITES


PLAIN_STREAMS = (IOStream, LeanIOStream)  # the streams whose socket takes frames as they are (not SSL)
