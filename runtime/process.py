"""The serving process's life: listen, drop privileges, say where to go, tune the collector, stop on a signal."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import pwd
import signal
import sys
import time
import urllib.parse

import structlog

from config.log_writer import NonBlockingLineWriter
from config.settings import Settings
from runtime.chat_server import ChatServer

log = structlog.get_logger("chat.server")


class ListenError(RuntimeError):
    """The port cannot be listened on; the message is one line for a person."""


# Errors of bind(): the address, not the server, is the problem.
_LISTEN_ERRORS = {
    errno.EADDRINUSE: "the port is already in use (another server? choose a free one with --port or CHAT_PORT)",
    errno.EACCES: "permission denied (ports under 1024 need privileges; choose another with --port or CHAT_PORT)",
    errno.EADDRNOTAVAIL: "the host is not an address of this machine (check --host or CHAT_HOST)",
}


def page_url(host: str, port: int) -> str:
    """The lobby's URL for a person; a wildcard address is reached through loopback."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/chat/"


def drop_privileges(user: str) -> None:
    """Started as root: become ``user`` (its group, no others) for good; nothing to do otherwise.

    Called once listening and with every module loaded: the port may be a
    privileged one, and the interpreter may live where ``user`` cannot read.
    """
    if not user or os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    log.info("server.privileges_dropped", user=user, uid=entry.pw_uid)


def shown_url(url: str) -> str:
    """A Redis URL as a person may see it: without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def start_line(settings: Settings, port: int, reason: str | None) -> str:
    """The one line a person sees at start: where to go, or that Redis cannot be reached and why."""
    url = page_url(settings.host, port)
    if reason is None:
        return f"Chat is running: open {url} (Ctrl-C stops it)"
    return (
        f"Chat cannot reach Redis at {shown_url(settings.redis_url or '')} ({reason}): it keeps trying, "
        f"and until it can, {url} cannot store messages and /readyz answers 503 (Ctrl-C stops it)"
    )


async def tell_the_person(settings: Settings, server: "ChatServer") -> None:
    """Where to go once the bus is ready; if it is not within the Redis timeout, why not, and later that it is."""
    deadline = time.monotonic() + settings.redis_timeout + 0.5
    while server.bus.unavailable_reason() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # a first connection in progress, bounded by the deadline
    reason = server.bus.unavailable_reason()
    print(start_line(settings, server.port, reason), file=sys.stderr, flush=True)
    if reason is not None:
        _watching.add(asyncio.ensure_future(_say_when_ready(settings, server)))


_watching: set["asyncio.Future[None]"] = set()  # a task needs a reference while it runs


async def _say_when_ready(settings: Settings, server: "ChatServer") -> None:
    while server.bus.unavailable_reason() is not None:
        await asyncio.sleep(0.5)  # a person's terminal, not a protocol: a poll is plenty
    print(start_line(settings, server.port, None), file=sys.stderr, flush=True)


# Python's cycle collector at its defaults (700, 10, 10) runs full collections
# again and again during a burst of joins, each scanning every object of every
# connection each time the heap grows by a quarter. Young collections every
# 10,000 allocations, full ones 100 times rarer than by default, and
# everything made at start-up frozen out of them: no full collection in a
# burst (bench/RESULTS.md, "Measurements formerly in code comments").
# Cycles are still collected, later.
GC_THRESHOLDS = (10_000, 10, 1000)


def tune_gc() -> None:
    """Fewer, cheaper cycle collections once the server is up (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, log_writer: NonBlockingLineWriter | None = None) -> None:
    server = ChatServer(settings)
    if log_writer is not None:
        server.metrics.count_dropped_log_lines_with(lambda: log_writer.dropped)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        await server.moderation.close()
        await server.bus.close()  # started before the listen that failed
        where = f"{settings.host}:{settings.port}"
        raise ListenError(f"cannot listen on {where}: {_LISTEN_ERRORS[exc.errno]}") from None
    drop_privileges(settings.run_as)
    tune_gc()
    if sys.stderr.isatty():  # a person started it: say where to go (stdout is the log)
        await tell_the_person(settings, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("server.stopping")
    await server.stop()
