"""The room socket's handshake: the room and ``since`` checked, the join budgets taken, refusals, the origin check.

A refusal here is an HTTP answer (404, 400, 429, 503) before any WebSocket
exists; docs/protocol.md lists them for a client author.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tornado.web import HTTPError

from bus.message import id_key
from handlers.identity import is_room_name
from handlers.joins import REFUSALS, room_is_new
from handlers.proxies import address_key, forwarded_from_proxy
from handlers.socket_state import SocketState
from handlers.token_gate import open_gate

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _host_port(netloc: str, scheme: str) -> str:
    """``host:port`` with the scheme's default port made explicit, lower-cased."""
    netloc = netloc.lower()
    if netloc.startswith("["):
        has_port = "]:" in netloc
    else:
        has_port = ":" in netloc
    return netloc if has_port else f"{netloc}:{_DEFAULT_PORTS.get(scheme, '80')}"


class Handshake(SocketState):
    """The handshake's part of ``RoomSocket``: what Tornado calls before the connection is a WebSocket."""

    __slots__ = ()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        room = args[0]
        if not is_room_name(room):
            raise HTTPError(404)
        since = self.get_query_argument("since", None, strip=False)  # "1-2 " is not an id either
        if since is not None:
            try:
                self._since = id_key(since)
            except ValueError:
                raise HTTPError(400, reason="since must be a message id") from None
        self._client = self.request.remote_ip or ""
        client = self._client_key = address_key(self._client)
        joins = self._limits.joins  # without tokens the address's join rate was taken as the request was routed
        if self._tokens is not None:  # token mode: refuses a token in the URL, reads the cookie's
            self._gate = await open_gate(self._tokens, self.request, room, self._settings)
        # A user known by the cookie's token has budgets and slots of its own, not its address's.
        slot = self._gate.slot(client) if self._gate is not None else client
        if self._gate is not None and not joins.handshakes.take(slot):
            return self._refuse_handshake(429, "join_rate")
        if joins.creates_limited and await room_is_new(self._bus, room) and not joins.new_rooms.take(slot):
            return self._refuse_handshake(429, "room_create_rate")
        refused = self._limits.connections.admit(slot)
        if refused is not None:
            return self._refuse_handshake(refused, "server_full" if refused == 503 else "client_full")
        self._slot = slot
        try:
            await super().get(*args, **kwargs)
        finally:
            # Tornado's get returns once the WebSocket is open; its frames are
            # read in callbacks from then on (handlers/websocket/reader.py), and
            # on_close gives the slot back when the connection ends. Refused by
            # Tornado or ended during open: given back now.
            connection = self.ws_connection
            if connection is None or connection.client_terminated or self._closed:
                self._release_slot()

    def _release_slot(self) -> None:
        """The connection's place in the per-address and per-process counts, given back once."""
        if self._slot is not None:
            self._limits.connections.release(self._slot)
            self._slot = None

    def _refuse_handshake(self, status: int, reason: str) -> None:
        self._metrics.connection_refused(reason)
        REFUSALS.refused(status, reason, self._client)  # a flood is made of refusals: their log is sampled
        self.set_status(status)
        if status == 503:
            self.set_header("Retry-After", "5")
        self.finish({"error": reason})

    def get_compression_options(self) -> None:
        """No permessage-deflate: ``send_frame`` writes uncompressed frames itself."""
        return None

    def check_origin(self, origin: str) -> bool:
        """Refuse browsers on other sites: a page elsewhere must not speak as our user.

        Same host (the proxy's ``X-Forwarded-Host`` when configured to trust
        it) or an origin in ``allowed_origins`` is accepted. Tornado calls this
        only when an Origin header is present; non-browser clients send none.
        """
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            return False
        if f"{parts.scheme}://{parts.netloc}".lower() in self._settings.allowed_origins:
            return True
        host = self.request.host
        settings = self._settings
        if forwarded_from_proxy(self.request, settings.behind_proxy, settings.forwarded_allow_ips):
            host = self.request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        scheme = "https" if parts.scheme == "https" else "http"
        return _host_port(parts.netloc, scheme) == _host_port(host, scheme)
