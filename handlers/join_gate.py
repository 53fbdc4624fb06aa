"""The join rate checked as the request is routed, before any handler exists: a refusal costs next to nothing.

A join flood is mostly refusals (one address at hundreds of handshakes a
second, 10 of them let in), so what a refusal costs is what the flood costs
everyone else. Tornado would make a ``RoomSocket`` (its headers, a Date, a
coroutine) for each and answer through ``finish``; here, once the router has
picked the room socket for the path, the address's join budget is taken and
a refusal is a fixed 429 written straight to the connection. Without token
mode the address is all the budget needs; in token mode the user comes from
the cookie's token, which only the handler verifies, so the handler takes it
(handlers/socket_handshake.py).
"""

from __future__ import annotations

from asyncio import Future
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPMessageDelegate, HTTPServerRequest
from tornado.iostream import StreamClosedError
from tornado.routing import Rule

from handlers.hosts import HostCheckedApplication
from handlers.joins import REFUSALS
from handlers.limits import JoinLimits
from handlers.proxies import address_key
from handlers.socket_metrics import SocketMetrics

REFUSED_BODY = b'{"error": "join_rate"}'
# The whole answer, fixed: written to the detached stream, then the connection
# closed rather than kept alive for another request (a flooder would only open
# the next one).
REFUSED_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: application/json; charset=UTF-8\r\n"
    b"Content-Length: " + str(len(REFUSED_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + REFUSED_BODY
)


class RefusedJoin(HTTPMessageDelegate):
    """A handshake's 429, written as soon as its request has been read."""

    def __init__(self, request: HTTPServerRequest) -> None:
        self._request = request

    def finish(self) -> None:
        connection = self._request.connection
        if not isinstance(connection, HTTP1Connection):
            return
        stream = connection.detach()  # Tornado's public way to take the connection over
        try:
            written = stream.write(REFUSED_RESPONSE)
        except StreamClosedError:
            return

        def close(done: "Future[None]") -> None:
            done.exception()  # a client gone first is no error worth a log line
            stream.close()

        written.add_done_callback(close)

    def on_connection_close(self) -> None:
        return None


class JoinCheckedApplication(HostCheckedApplication):
    """The application, with the join rate of room sockets (``socket_class``) checked as they are routed."""

    def __init__(
        self, handlers: list[Rule] | list[Any], allowed: frozenset[str] | None, gate: "JoinGate | None", **settings: Any
    ) -> None:
        super().__init__(handlers, allowed, **settings)
        self._gate = gate

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        delegate = super().find_handler(request, **kwargs)
        gate = self._gate
        if gate is not None and getattr(delegate, "handler_class", None) is gate.socket_class:
            return gate.check(request) or delegate
        return delegate


class JoinGate:
    """Takes a routed handshake's join budget by address; the refusal, or None to go on."""

    def __init__(self, socket_class: type, joins: JoinLimits, metrics: SocketMetrics) -> None:
        self.socket_class = socket_class
        self._joins = joins
        self._metrics = metrics

    def check(self, request: HTTPServerRequest) -> RefusedJoin | None:
        client = address_key(request.remote_ip or "")  # IPv6 by /64, as every per-address budget
        if self._joins.handshakes.take(client):
            return None
        self._metrics.connection_refused("join_rate")
        REFUSALS.refused(429, "join_rate", client)
        return RefusedJoin(request)


__all__ = ["JoinCheckedApplication", "JoinGate", "RefusedJoin"]
