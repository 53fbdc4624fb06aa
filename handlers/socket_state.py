"""The room socket's state: every attribute a connection keeps, in slots, set up once per connection.

``RoomSocket`` (handlers/room_socket.py) is made of parts that share this
state: the handshake (handlers/socket_handshake.py), the join and replay
(handlers/socket_join.py), the frames a client sends (handlers/socket_inbound.py);
the write path and the close stay on ``RoomSocket`` itself. Here too: the
close codes the parts send, and the hooks the ping wheel calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tornado.concurrent import Future
from tornado.websocket import WebSocketHandler

from bus.message import IdKey
from bus.moderation import Moderation
from bus.room_bus import RoomBus
from config.settings import Settings
from handlers.identity import Identity
from handlers.limits import SocketLimits
from handlers.rate_limit import TokenBucket
from handlers.registry import SocketRegistry
from handlers.socket_metrics import SocketMetrics
from handlers.token_gate import TokenGate
from handlers.tokens import TokenVerifier
from handlers.websocket.control import PING_TIMED_OUT, PING_TIMEOUT_CODE, pong_received, send_ping
from handlers.websocket.slots import HANDLER_SLOTS

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


@dataclass(frozen=True)
class SocketContext:
    """What every room socket works with, given to each through ``initialize`` (runtime/app.py)."""

    bus: RoomBus
    settings: Settings
    registry: SocketRegistry
    metrics: SocketMetrics
    limits: SocketLimits
    tokens: TokenVerifier | None = None  # token mode's verifier; None without token settings
    moderation: Moderation | None = None  # the host application's bans and mutes


class SocketState(WebSocketHandler):
    # Our state and Tornado's live in slots, not in the instance dict: with
    # both, the dict passed CPython's 30 shared keys and became a full dict of
    # its own on every idle connection (bench/RESULTS.md, "Measurements formerly in code comments").
    __slots__ = (
        "_bus",
        "_limits",
        "_metrics",
        "_counted",
        "_settings",
        "_registry",
        "_joined",
        "_closed",
        "_opened_at",
        "_messages_in",
        "_messages_out",
        "_unsent",
        "_last_write",
        "_server_close_code",
        "_refusals",
        "_over_rate",
        "_log_budget",
        "_unlogged",
        "_client",
        "_client_key",
        "_slot",
        "room",
        "user",
        "identity",
        "_tokens",
        "_gate",
        "_moderation",
        "conn",
        "_since",
        "ping_slot",
        "ping_awaiting",
    ) + HANDLER_SLOTS

    def initialize(self, context: SocketContext) -> None:
        self._bus = context.bus
        self._moderation = context.moderation
        self._limits = context.limits
        self._metrics = context.metrics
        self._counted = False  # in chat_connections; on_close must undo only what open did
        self._settings = context.settings
        self._registry = context.registry
        self._joined = False
        self._closed = False
        self._opened_at = 0.0
        self._messages_in = 0
        self._messages_out = 0
        self._unsent = 0
        self._last_write: "Future[None] | None" = None  # resolves once everything queued reached the kernel
        self._server_close_code: int | None = None
        # The refusal budgets are made at the first refusal: a bucket made
        # then is full, exactly as one made at open would be by then (it
        # refills to its burst and spent nothing), and most connections never
        # send a bad frame, so most never pay for three buckets.
        self._refusals: TokenBucket | None = None
        self._over_rate: TokenBucket | None = None
        self._log_budget: TokenBucket | None = None
        self._unlogged = 0  # rejections left out of the log since the last line
        self.room = ""
        self.user = ""  # the bus's key of the user: identity.key once joined
        self.identity: Identity | None = None  # who this connection is, once known
        self._tokens = context.tokens
        self._gate: TokenGate | None = None  # token mode: this connection's token
        self.conn = ""
        self._since: IdKey | None = None
        self._client = ""  # the client's address, kept once the request's headers are let go
        self._client_key = ""  # what the address's budgets are kept under: its /64 for IPv6
        self._slot: str | None = None  # held in the connection counts from the handshake until the close
        self.ping_slot = -1  # the registry's ping wheel keeps these
        self.ping_awaiting = False

    # ---- the ping wheel's (handlers/pings.py) ------------------------------

    @property
    def ping_interval(self) -> float | None:
        """None when the registry's wheel pings this socket: Tornado then starts no ping task of its own."""
        if self._registry.pings is not None:
            return None
        return super().ping_interval

    def send_ping(self) -> bool:
        return send_ping(self)

    def pong_received(self) -> bool:
        return pong_received(self)

    def ping_timed_out(self) -> None:
        connection = self.ws_connection
        if connection is not None:
            connection.close(PING_TIMEOUT_CODE, PING_TIMED_OUT)  # noted by watch_closes, as Tornado's own timeout

    if TYPE_CHECKING:  # RoomSocket's own: the write path every delivered frame takes stays on the class the bus calls

        def send_frame(self, frame: bytes) -> None: ...

        def _drop_slow_client(self) -> None: ...

        def _close_by_server(self, code: int, reason: str) -> None: ...
