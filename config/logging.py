"""structlog, set up once at start-up, as structlog's production recipe has it.

Every line on stdout is one JSON object (or a console line on a terminal)
with ``timestamp`` (ISO 8601 UTC), ``level``, ``event`` and ``node``.
Context bound with ``structlog.contextvars`` (a connection's ``conn``,
``room``, ``user``) is merged into every line logged in that context.

Two routes, one pipeline: structlog's own events are rendered and written
straight to the stream (no ``logging.LogRecord`` per chat message); the
standard library's loggers (Tornado's error logs, asyncio) reach the same
stream through a ``ProcessorFormatter`` running the same processors and
renderer, so their lines are JSON too. Both write whole lines and flush, so
lines never mix. In the server, the stream is ``stdout_writer()``: lines go
out from a thread of their own, so logging never holds up serving (a stuck
reader of stdout must not stop the chat). An exception is rendered once, as the ``exception`` field
(a list of frames, without locals).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from config.log_writer import NonBlockingLineWriter


def _orjson_dumps(event: EventDict, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


class _UtcStamp:
    """``timestamp``: ISO 8601 in UTC with microseconds (``2026-11-29T21:50:08.674976Z``).

    structlog's ``TimeStamper`` builds a ``datetime`` per line; the part up to
    the second is made here once a second, a fifth of the cost on a line per
    chat message.
    """

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")  # one tuple: a thread never sees a second with another's text

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second, prefix = self._second
        if int(now) != second:
            second = int(now)
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        event["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


# Tracebacks as a field, without frame locals: a local may hold a message's
# text or a secret, and the logs must hold neither unless configured.
_dict_tracebacks = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def shared_processors(node_id: str) -> list[Processor]:
    def add_node(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event.setdefault("node", node_id)
        event.pop("color_message", None)  # a console copy of the event some libraries (uvicorn) add
        return event

    return [structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level, _UtcStamp(), add_node]


def rendering_processors(log_format: str, stream: TextIO) -> list[Processor]:
    """The last steps of every line: tracebacks as a field (JSON), then the renderer."""
    if log_format == "console":
        return [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    return [_dict_tracebacks, structlog.processors.JSONRenderer(serializer=_orjson_dumps)]


def stdout_writer(node_id: str) -> NonBlockingLineWriter:
    """The process's stdout as a writer that drops lines rather than block (config/log_writer.py).

    Python's own ``sys.stdout`` is pointed at it too, so nothing else
    writes to the descriptor past it (or fails at exit on a broken pipe).
    """
    fd = sys.stdout.fileno()
    writer = NonBlockingLineWriter(fd, node_id, tty=os.isatty(fd))
    sys.stdout = cast(TextIO, writer)
    return writer


def configure_logging(node_id: str, log_format: str, stream: TextIO | None = None, level: str = "info") -> None:
    """Route structlog and the standard library's loggers to one stdout pipeline, from ``level`` up."""
    stream = stream or sys.stdout
    threshold = logging.getLevelName(level.upper())
    shared = shared_processors(node_id)
    rendering = rendering_processors(log_format, stream)
    # Our own events (one per chat message) go straight to the stream: a
    # detour through the standard library's LogRecords costs several times the
    # rest of the pipeline (structlog's docs/performance.md).
    structlog.configure(
        processors=[*shared, *rendering],
        logger_factory=structlog.WriteLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    # Tornado's and asyncio's loggers: the same processors and renderer, the same stream.
    formatter = structlog.stdlib.ProcessorFormatter(
        # Lines from Tornado and asyncio name their logger; ours name their event.
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    # Tornado's access log is replaced by our own http.request event.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
