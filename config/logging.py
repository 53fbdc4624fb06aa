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

import contextvars
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO, cast

import orjson
import structlog
from structlog._log_levels import map_method_name
from structlog.contextvars import STRUCTLOG_KEY_PREFIX, STRUCTLOG_KEY_PREFIX_LEN
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
        micros = time.time_ns() // 1000  # integers: no float rounding past the microsecond
        second, prefix = self._second
        if micros // 1_000_000 != second:
            second = micros // 1_000_000
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        event["timestamp"] = "%s.%06dZ" % (prefix, micros % 1_000_000)
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


class _JsonLine:
    """A structlog event to its JSON line in one step: the processors of ``shared_processors`` and
    ``rendering_processors`` for the JSON format, fused, giving orjson's bytes with the newline.

    The same fields and precedence as that chain (which Tornado's and asyncio's lines still take):
    context first (an event's own fields win), then ``level``, ``timestamp`` and ``node``, the
    exception as a field. One call instead of six and no trip through ``str`` on the line written per
    chat message: 12.4 -> 11.1 µs a line in bench/experiments/log_line_cost.py's setting
    (bench/RESULTS.md, "CPU per delivery").
    """

    def __init__(self, node_id: str) -> None:
        self._node = node_id
        self._stamp = _UtcStamp()

    def __call__(self, logger: WrappedLogger, method_name: str, event: EventDict) -> bytes:
        for var, value in contextvars.copy_context().items():
            name = var.name
            if value is not Ellipsis and name.startswith(STRUCTLOG_KEY_PREFIX):
                event.setdefault(name[STRUCTLOG_KEY_PREFIX_LEN:], value)
        event["level"] = "info" if method_name == "info" else map_method_name(method_name)
        self._stamp(logger, method_name, event)
        event.setdefault("node", self._node)
        event.pop("color_message", None)
        if "exc_info" in event:
            event = _dict_tracebacks(logger, method_name, event)
        return orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE)


class HotLog:
    """``info`` for a line logged per chat message: the same line as structlog's, for less CPU.

    A call through structlog's bound logger copies its context, builds the
    event and walks the processors before ``_JsonLine`` runs: a third of an
    11 µs line (bench/experiments/log_line_cost.py). While the JSON pipeline
    that ``configure_logging`` set is the one in force, the event goes
    straight to that pipeline's ``_JsonLine`` and ``_LineLogger``, which is
    what structlog would have done with it. Anything else (the console
    format, ``structlog.testing.capture_logs``, which swaps the processors
    in place, nothing configured) goes through structlog as usual.
    """

    def __init__(self, name: str) -> None:
        self._log = structlog.get_logger(name)

    def info(self, event: str, fields: EventDict) -> None:
        """Log ``event`` with ``fields`` (the caller's dict, taken over) at level info."""
        route = _direct
        if route is None or not route.in_force():
            self._log.info(event, **fields)
        elif route.info_enabled:
            fields["event"] = event
            route.write(route.line(None, "info", fields))


@dataclass(frozen=True)
class _DirectRoute:
    """The JSON pipeline as ``configure_logging`` set it: the one processor, its logger, the level."""

    processors: list[Processor]  # the very list handed to structlog (capture_logs changes it in place)
    line: _JsonLine
    write: Callable[[bytes], None]
    info_enabled: bool

    def in_force(self) -> bool:
        # The list, not structlog's configuration: a logger cached on first use (as configured) keeps this
        # list through a later ``configure``, and ``capture_logs`` changes this list in place.
        processors = self.processors
        return len(processors) == 1 and processors[0] is self.line


_direct: _DirectRoute | None = None  # set by configure_logging for the JSON format


class _LineLogger:
    """structlog's logger for ``_JsonLine``'s lines: each handed to the stream whole, as bytes when it takes them."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._write_line = getattr(stream, "write_line", None)

    def msg(self, line: bytes) -> None:
        if self._write_line is not None:  # NonBlockingLineWriter: its own lock
            self._write_line(line)
            return
        with self._lock:
            self._stream.write(line.decode())
            self._stream.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


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
    global _direct
    processors: list[Processor] = [*shared, *rendering]
    factory: Callable[..., Any] = structlog.WriteLoggerFactory(stream)
    _direct = None
    if log_format != "console":
        line, writer = _JsonLine(node_id), _LineLogger(stream)
        processors, factory = [line], lambda *_: writer
        _direct = _DirectRoute(processors, line, writer.msg, threshold <= logging.INFO)
    structlog.configure(
        processors=processors,
        logger_factory=factory,
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
