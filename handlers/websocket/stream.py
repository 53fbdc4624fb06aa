"""An open socket's ``IOStream`` without its two write queues until a write has to queue.

Tornado's ``IOStream`` makes, per connection, a write buffer (``_StreamBuffer``
around a deque) and a deque of the writes' Futures: an empty deque is 760
bytes, so 1.5 KiB of every idle connection (bench/RESULTS.md, "Idle
connections: where each KiB goes"). Frames go straight to the socket
(writer.py); only a frame the kernel does not take whole is queued, and most
sockets never queue one. Until then both queues are one shared empty object,
and the first write that queues makes the real ones.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator

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


class LeanIOStream(IOStream):
    """``IOStream`` whose write queues are made by the first write that needs them."""

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
