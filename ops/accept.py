"""Accepting connections when the process runs out of file descriptors.

Tornado's accept loop lets ``EMFILE`` escape; the listening socket stays
readable, so the event loop calls it again at once: 100% CPU and one
traceback per turn (the audit saw 46,232 lines in 5 s). Here accepting
pauses instead, for ``PAUSE`` seconds, and is logged once per ``LOG_EVERY``
seconds with the number of pauses. Connections wait in the listen backlog
meanwhile, and the ones already open (``/healthz`` included) are served.

``connection_cap`` keeps WebSockets below the descriptor limit, so the last
descriptors stay free for health checks and pages rather than for one more
idle socket; ``log_descriptor_limit`` says at start what the limit allows.
"""

from __future__ import annotations

import errno
import resource
import socket
import time
from typing import Any, Callable, Iterable

import structlog
import tornado.httpserver
from tornado.httputil import HTTPConnection, HTTPMessageDelegate
from tornado.ioloop import IOLoop

log = structlog.get_logger("chat.accept")
_server_log = structlog.get_logger("chat.server")  # the start-up line is the server's

PAUSE = 0.25  # seconds without accepting once descriptors (or kernel memory) run out
LOG_EVERY = 10.0  # seconds between two accept.paused lines
ACCEPTS_PER_TURN = 128  # as Tornado: a burst of connections must not starve the loop
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_descriptor_limit() -> int:
    """Lift the soft limit on open files to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it was: the cap below still follows it
    return soft


def connection_cap(max_connections: int, descriptors: int) -> int:
    """WebSockets this process may hold: the setting, less what leaves too few descriptors free.

    An eighth of the descriptors (at least 32) stays for listening sockets,
    Redis, logs, pages and health checks.
    """
    reserve = max(32, descriptors // 8)
    return max(1, min(max_connections, descriptors - reserve))


def log_descriptor_limit(max_connections: int, descriptors: int, cap: int) -> None:
    """Say once what the open-file limit allows; warn when it, not --max-connections, bounds the WebSockets."""
    if cap < max_connections:
        _server_log.warning(
            "server.descriptor_limit",
            descriptors=descriptors,
            max_connections=max_connections,
            websockets=cap,
            detail="the hard open-file limit is too low for --max-connections: handshakes past "
            f"{cap} get 503; raise it (ulimit -Hn, systemd LimitNOFILE=) to hold more",
        )
    else:
        _server_log.info(
            "server.descriptor_limit", descriptors=descriptors, max_connections=max_connections, websockets=cap
        )


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer with an accept loop that pauses, rather than spins, when out of descriptors.

    With ``xheaders``, ``trusts_peer`` (given the TCP peer's address) says
    whose forwarded headers are applied; any other peer's own address counts.
    """

    def initialize(
        self,
        *args: Any,
        trusts_peer: Callable[[str], bool] | None = None,
        per_address: "AddressCap | None" = None,
        **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        self.trusts_peer = trusts_peer
        self.per_address = per_address

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        if self.xheaders and self.trusts_peer is not None and not self.trusts_peer(_peer(request_conn)):
            return delegate.delegate  # type: ignore[attr-defined]  # Tornado's proxy adapter, unwrapped
        return delegate

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = accept_guarded(sock, self._admit)

    def _admit(self, connection: socket.socket, address: Any) -> None:
        """Serve a new connection, or close it at once when its address holds its share already."""
        if self.per_address is not None and not self.per_address.admit(_host(address)):
            connection.close()  # its descriptor is free again at once, for someone else
            return
        self._handle_connection(connection, address)

    def on_close(self, server_conn: object) -> None:
        """A connection ended, or became a WebSocket (counted by the WebSocket limits from then on)."""
        super().on_close(server_conn)
        if self.per_address is not None:
            self.per_address.release(_host(getattr(getattr(server_conn, "context", None), "address", None)))


class AddressCap:
    """At most ``limit`` open HTTP connections per client address (``key``: how addresses are grouped).

    Slow-header connections from one address would otherwise take every
    descriptor, and a good handshake from anyone else would wait in the
    listen backlog until they timed out. ``exempt`` addresses (the proxy,
    which speaks for everyone) are not counted.
    """

    def __init__(
        self,
        limit: int,
        key: Callable[[str], str],
        exempt: Callable[[str], bool],
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.limit = limit
        self._key = key
        self._exempt = exempt
        self._on_refused = on_refused  # the metric of refusals
        self._open: dict[str, int] = {}
        self.refused = 0

    def admit(self, address: str) -> bool:
        if self._exempt(address):
            return True
        key = self._key(address)
        held = self._open.get(key, 0)
        if held >= self.limit:
            self.refused += 1
            self._on_refused()
            return False
        self._open[key] = held + 1
        return True

    def release(self, address: str) -> None:
        if self._exempt(address):
            return
        key = self._key(address)
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""


def _peer(connection: HTTPConnection) -> str:
    return _host(getattr(getattr(connection, "context", None), "address", None))


class _Pauses:
    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")

    def note(self, error: OSError) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY:
            log.warning(
                "accept.paused",
                reason=errno.errorcode.get(error.errno or 0, str(error)),
                pauses=self.count,
                pause_ms=int(PAUSE * 1000),
            )
            self.logged_at, self.count = now, 0


def accept_guarded(sock: socket.socket, callback: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
    """Like ``tornado.netutil.add_accept_handler``; returns the function that stops accepting."""
    loop = IOLoop.current()
    pauses = _Pauses()
    state: dict[str, Any] = {"removed": False, "resume": None}

    def on_readable(_fd: Any, _events: int) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            if state["removed"]:
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    raise
                pause(error)
                return
            callback(connection, address)

    def pause(error: OSError) -> None:
        pauses.note(error)
        loop.remove_handler(sock)
        state["resume"] = loop.call_later(PAUSE, resume)

    def resume() -> None:
        state["resume"] = None
        if not state["removed"]:
            loop.add_handler(sock, on_readable, IOLoop.READ)

    def remove() -> None:
        state["removed"] = True
        if state["resume"] is not None:
            loop.remove_timeout(state["resume"])
        else:
            loop.remove_handler(sock)

    loop.add_handler(sock, on_readable, IOLoop.READ)
    return remove
