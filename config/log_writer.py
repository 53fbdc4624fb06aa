"""A stdout writer that never holds up the event loop.

Log lines are handed to a thread that writes them to the file descriptor;
the caller only appends to a queue. The thread is woken by the first line
after a quiet spell and then lets lines gather for ``LINGER`` seconds (or
until ``FLUSH_BYTES`` are queued) before one write: every wake-up of the
thread costs the event loop a hand-over of the GIL, and there is one traffic
line per message (bench/RESULTS.md, "Measurements formerly in code comments").

When nobody reads stdout (a pipe whose reader is stuck) the queue fills to
``max_pending`` bytes and further lines are dropped and counted; when the
reader has gone (``EPIPE``) every line is dropped and counted. Once writing
works again, a ``log.lines_dropped`` line says how many were lost. Nothing here raises into the server, and a blocked
writer thread does not keep the process from exiting (it is a daemon).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from datetime import datetime, timezone

import orjson

MAX_PENDING = 1024 * 1024  # bytes of lines waiting for the writer thread
LINGER = 0.05  # seconds lines gather before a write: a log line this late is still live for a person
FLUSH_BYTES = 64 * 1024  # ...unless this much is queued


class NonBlockingLineWriter:
    """A text-file-like sink (``write``/``flush``) for whole log lines."""

    def __init__(self, fd: int, node_id: str = "", max_pending: int = MAX_PENDING, tty: bool = False) -> None:
        self._fd = fd
        self._node = node_id
        self._max_pending = max_pending
        self._tty = tty
        self._lines: deque[bytes] = deque()
        self._pending = 0
        self._dropped = 0  # ever, for the metric
        self._unreported = 0  # since the last log.lines_dropped line
        self._broken = False
        self._asleep = True  # the thread waits for a first line, not lingering
        self._hurry = False
        self.writes = 0  # os.write calls, for the tests
        self._ready = threading.Condition(threading.Lock())
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._dropped

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        self.write_line(text.encode("utf-8", errors="replace"))
        return len(text)

    def write_line(self, data: bytes) -> None:
        """Queue one whole line, already encoded (its newline included)."""
        with self._ready:
            if self._broken or self._pending + len(data) > self._max_pending:
                self._dropped += 1
                self._unreported += 1
                return
            self._lines.append(data)
            self._pending += len(data)
            if self._asleep:  # the thread set _idle as it fell asleep: it is busy again
                self._idle.clear()
                self._asleep = False
                self._ready.notify()
            elif self._pending >= FLUSH_BYTES:
                self._ready.notify()

    def flush(self) -> None:
        """Nothing to do: the writer thread writes as soon as it can (see ``drain``)."""

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every queued line to be written; False if some are still queued."""
        with self._ready:
            self._hurry = True
            self._ready.notify()
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines:
                    self._idle.set()
                    self._asleep = True
                    self._ready.wait()
                if not self._hurry and self._pending < FLUSH_BYTES:
                    self._ready.wait(LINGER)  # let more lines come: one write, one wake-up for them all
                self._hurry = False
                batch = b"".join(self._lines)
                self._lines.clear()
                self._pending = 0
                unreported, self._unreported = self._unreported, 0
            if unreported:
                batch = self._dropped_line(unreported) + batch
            self._write_all(batch)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                self.writes += 1
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError:  # EPIPE (the reader is gone), EBADF ...: drop from now on
                with self._ready:
                    self._broken = True
                    self._dropped += data.count(b"\n")
                return
            view = view[written:]

    def _dropped_line(self, count: int) -> bytes:
        stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        body = {
            "timestamp": stamp,
            "level": "warning",
            "event": "log.lines_dropped",
            "node": self._node,
            "count": count,
        }
        return orjson.dumps(body) + b"\n"
