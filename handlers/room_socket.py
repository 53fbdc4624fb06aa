"""The room WebSocket (docs/protocol.md): open -> join, on_message -> publish or typing, on_close -> leave.

The handler speaks WebSocket and JSON; everything about storing, ordering
and fanning out messages is the RoomBus's. It never writes to another
connection: frames for this client arrive through ``send_frame`` from the bus.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import structlog
from tornado.concurrent import Future
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError
from tornado.websocket import WebSocketHandler, WebSocketProtocol

from bus import frames
from bus.backend import BusUnavailable, RateLimited
from bus.message import Draft, History, IdKey, id_key
from bus.moderation import Moderation
from bus.room_bus import RoomBus
from config.settings import Settings
from handlers import room_requests
from handlers.identity import Identity, cookie_user, guest_name, is_room_name
from handlers.inbound import ChatRequest, EditRequest, FrameError, TypingRequest, parse_frame
from handlers.joins import REFUSALS, room_is_new
from handlers.limits import SocketLimits
from handlers.moderated import CLOSE_MODERATED, banned, muted
from handlers.proxies import address_key, forwarded_from_proxy
from handlers.rate_limit import TokenBucket
from handlers.registry import SocketRegistry
from handlers.sampled_log import PUBLISH_FAILED
from handlers.socket_metrics import SocketMetrics
from handlers.token_gate import TokenGate, open_gate
from handlers.tokens import TokenVerifier
from handlers.websocket.control import (
    PING_TIMED_OUT,
    PING_TIMEOUT_CODE,
    aborter,
    pong_received,
    send_ping,
    watch_closes,
)
from handlers.websocket.slots import HANDLER_SLOTS, release_handshake, slotted_protocol
from handlers.websocket.writer import Written, text_frame, write_text

log = structlog.get_logger("chat.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
__all__ = ["CLOSE_GOING_AWAY", "RoomSocket", "SocketLimits", "SocketRegistry", "text_frame"]

# Refused frames each cost an error frame and a metric. Junk (bad JSON, bad
# requests, too long) may be refused REFUSED_BURST times, refilling at
# REFUSED_PER_SECOND; past that the connection is closed with 1008, so junk
# costs no more than it sends. Messages over the rate have a budget of their
# own, larger because a page resending eagerly is not an attack: every one is
# answered (the page resends on rate_limited), and a sender that stays far
# over the rate for that long is closed with 1008 (it reconnects and resends
# what was not acknowledged, as the room page does).
REFUSED_BURST = 100
REFUSED_PER_SECOND = 10.0
OVER_RATE_BURST = 1000
OVER_RATE_PER_SECOND = 50.0
# The rejection log: the first LOGGED_BURST lines per connection, then one a
# second, each saying how many were left out since the last.
LOGGED_BURST = 20
LOGGED_PER_SECOND = 1.0
DEFAULT_REPLAY_STALL = 20.0  # seconds a replay waits on a client that reads nothing, when pings are off


def _host_port(netloc: str, scheme: str) -> str:
    """``host:port`` with the scheme's default port made explicit, lower-cased."""
    netloc = netloc.lower()
    if netloc.startswith("["):
        has_port = "]:" in netloc
    else:
        has_port = ":" in netloc
    return netloc if has_port else f"{netloc}:{_DEFAULT_PORTS.get(scheme, '80')}"


class RoomSocket(WebSocketHandler):
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

    def initialize(
        self,
        bus: RoomBus,
        settings: Settings,
        registry: SocketRegistry,
        metrics: SocketMetrics,
        limits: SocketLimits,
        tokens: TokenVerifier | None = None,
        moderation: Moderation | None = None,
    ) -> None:
        self._bus = bus
        self._moderation = moderation  # the host application's bans and mutes
        self._limits = limits
        self._metrics = metrics
        self._counted = False  # in chat_connections; on_close must undo only what open did
        self._settings = settings
        self._registry = registry
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
        self._tokens = tokens  # token mode's verifier; None without token settings
        self._gate: TokenGate | None = None  # token mode: this connection's token
        self.conn = ""
        self._since: IdKey | None = None
        self._client = ""  # the client's address, kept once the request's headers are let go
        self._client_key = ""  # what the address's budgets are kept under: its /64 for IPv6
        self.ping_slot = -1  # the registry's ping wheel keeps these
        self.ping_awaiting = False

    # ---- handshake -------------------------------------------------------

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
        try:
            # Returns when the connection ends (Tornado reads its frames in here).
            await super().get(*args, **kwargs)
        finally:
            self._limits.connections.release(slot)

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

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        protocol = slotted_protocol(self)
        if protocol is not None:
            # The reader closes a frame over the size limit (1009) and a
            # protocol violation (1002, 1007) through the protocol, and
            # Tornado keeps no note of the code: it is noted here for the log.
            watch_closes(protocol, self._closed_by_protocol)
        return protocol

    def _closed_by_protocol(self, code: int | None, reason: str | None) -> None:
        if code is not None and self._server_close_code is None:
            self._server_close_code = code
        if reason == PING_TIMED_OUT:
            # A peer that answers no ping will not answer the close frame
            # either: end it now so its user leaves the room now, not in 5 s.
            asyncio.get_running_loop().call_soon(aborter(self))

    # ---- life cycle ------------------------------------------------------

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # Tornado leaves Nagle's algorithm on after the handshake: a frame
        # written right after another (a message's echo, then its ack) would
        # wait for the client's delayed ACK, 40 ms on Linux.
        self.set_nodelay(True)
        self.room = args[0]
        self.conn = f"{self._settings.node_id}:{self._registry.next_id()}"
        self._opened_at = time.monotonic()
        self._registry.add(self)
        if self._registry.pings is not None and self._registry.pings.enabled:
            self._registry.pings.add(self)
        self._metrics.connection_opened()
        self._counted = True
        structlog.contextvars.bind_contextvars(conn=self.conn, room=self.room)
        identity = self._gate.open(self) if self._gate is not None else Identity(cookie_user(self) or guest_name())
        if identity is not None:
            self._know(identity)
        log.info("ws.connect", client=self._client, since=str(self._since) if self._since else None)
        release_handshake(self)
        if identity is not None:
            await self._enter()

    def _know(self, identity: Identity) -> None:
        self.identity = identity
        self.user = identity.key
        structlog.contextvars.bind_contextvars(user=identity.name)
        if identity.user_id is not None:
            structlog.contextvars.bind_contextvars(user_id=identity.user_id)

    async def _enter(self) -> None:
        """Join the room as the known identity: history, ready, then live (the rest of ``open``)."""
        if self.identity is not None and banned(self._moderation, self.identity, self.room):
            log.info("ws.banned")
            self._close_by_server(CLOSE_MODERATED, "banned from this room")
            return
        started = time.perf_counter()
        try:
            history = await self._bus.join(self.room, self, self.user, self._since)
        except BusUnavailable as exc:
            log.warning("ws.join_failed", reason=str(exc))
            self.send_frame(FrameError("unavailable", "the chat is unavailable, try again").frame())
            self._close_by_server(CLOSE_TRY_AGAIN, "bus unavailable")
            return
        if self._closed:
            # Gone while joining: on_close saw no seat to give up, so give it
            # up here, or the user would stay in the room's presence for good.
            self._bus.leave_soon(self.room, self)
            return
        self._joined = True
        joined = time.perf_counter()
        self._metrics.join_took(joined - started)
        if not await self._replay(history):
            return
        self._metrics.replay_took(time.perf_counter() - joined)
        self._bus.go_live(self.room, self)  # presence, then live messages and notices

    async def _replay(self, history: History) -> bool:
        """The history, then ``ready``, at the pace the client reads; False when it does not read.

        The replay may be larger than the slow-client bound (a room of long
        messages, a ``since`` far back). Written at once, it would trip the
        bound before ``ready`` whatever the reader did, since bytes leave the
        count only once flushed. So whenever the next frame would pass half
        the bound, the replay waits for what is queued to reach the kernel: a
        reader is never dropped for a large history, and a client that reads
        nothing for ``replay_stall`` seconds is dropped holding no more than
        the bound. Each client's replays together keep to ``--replay-rate``
        after a first ``--replay-burst`` (handlers/joins.py). Live messages
        wait in the member's seat meanwhile.
        ``--history 0`` replays nothing to a plain join, on any backend.
        """
        replay_all = self._since is not None or self._settings.history > 0
        in_flight = self._settings.send_buffer_limit // 2  # the other half for what goes live after it
        budget, payer = self._limits.joins.replay, (self.identity or Identity(self.user)).budgets(self._client_key)[1]
        for message in history.messages if replay_all else ():
            frame = message.frame(replay=True)
            if self._unsent + len(frame) > in_flight and not await self._drained():
                return False
            wait = budget.reserve(payer, len(frame))  # paced per client: a burst, then --replay-rate
            if wait > 0:
                await asyncio.sleep(wait)
                if self._closed:
                    return False
            self.send_frame(frame)
        self.send_frame(frames.ready(self.room, self.user, history.last_id, history.complete))
        return not self._closed

    async def _drained(self) -> bool:
        """Wait until every queued byte reached the kernel; on a stall, drop the client and say False."""
        last = self._last_write
        if last is None or self._closed:
            return not self._closed
        try:
            await asyncio.wait_for(asyncio.shield(last), self._replay_stall())
        except asyncio.TimeoutError:
            self._drop_slow_client()
            return False
        except StreamClosedError:
            return False
        return not self._closed

    def _replay_stall(self) -> float:
        """How long a replay waits for the client to read: as long as a ping may go unanswered."""
        return self._settings.ping_timeout or DEFAULT_REPLAY_STALL

    def on_close(self) -> None:
        self._closed = True
        if self._gate is not None:
            self._gate.stop()
        self._registry.discard(self)
        if self._registry.pings is not None:
            self._registry.pings.discard(self)
        code = self._server_close_code or self.close_code
        if self._counted:
            self._counted = False
            self._metrics.connection_closed(code)
        # conn, room and user come from the context open() bound: Tornado runs
        # on_close in the connection's own task, whoever closed it.
        log.info(
            "ws.disconnect",
            code=code,
            reason=self.close_reason,
            duration_ms=round((time.monotonic() - self._opened_at) * 1000),
            messages_in=self._messages_in,
            messages_out=self._messages_out,
        )
        if self._joined:
            self._joined = False
            self._bus.leave_soon(self.room, self)

    # ---- inbound ---------------------------------------------------------

    async def on_message(self, data: str | bytes) -> None:
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return  # closed by us (junk, too slow): what the client sent meanwhile is not read
        gate = self._gate
        charged: bool | None = None  # a frame the gate looks at and passes on is charged once, not twice
        if gate is not None and gate.wants(data):
            if gate.grant is not None:  # a refresh costs a verification: charged
                charged = self._charge()
                if not charged:
                    self._reject(FrameError("rate_limited", "too many frames, slow down"))
                    return
            taken = await gate.take(self, data)
            if isinstance(taken, Identity):
                self._know(taken)
                await self._enter()
            if taken is not False:
                return
        # Every frame is charged, junk and typing included, to the user and to
        # the client address across all their connections: reconnecting buys
        # no fresh burst and a flood of bad frames is limited like any other.
        within_rate = self._charge() if charged is None else charged
        try:
            request = parse_frame(data, self._settings.max_message_chars)
            if isinstance(request, TypingRequest):
                # Typing over the rate, or from a muted user, is dropped: it needs no answer.
                if within_rate and not muted(self._moderation, self.identity, self.room):
                    await self._bus.typing(self.room, self)  # and throttled to 1/s by the bus
                return
            if not within_rate:
                raise FrameError("rate_limited", "too many messages, slow down", getattr(request, "client_id", None))
            if isinstance(request, ChatRequest | EditRequest) and muted(self._moderation, self.identity, self.room):
                # An edit speaks as much as a message; reading older history and deleting one's own stay open.
                raise FrameError("muted", "you are muted in this room", getattr(request, "client_id", None))
            if not isinstance(request, ChatRequest):  # older, edit, delete
                answer = await room_requests.serve(self._bus, self.room, self.user, self._settings, request)
                if answer is not None:
                    self.send_frame(answer)
                return
            await self._publish(request)
        except FrameError as error:
            self._reject(error)  # a bad frame keeps its own code; it used up a token all the same

    def charge_control(self) -> bool:
        """A ping or pong from the client (frame_reader): charged like any frame; False: ignore it.

        Past the rate it goes unanswered, and counts against the over-rate
        budget like a refused message; past that the connection is closed
        with 1008. Once closing, nothing more is answered.
        """
        if self._closed or self._server_close_code is not None:
            return False
        # Before the identity is known (token mode, awaiting auth) only the address is charged.
        if self._charge() if self.identity is not None else self._limits.per_client.take(self._client_key):
            return True
        self._metrics.message_rejected("rate_limited")
        budget = self._over_rate = self._over_rate or TokenBucket(OVER_RATE_PER_SECOND, OVER_RATE_BURST)
        if not budget.take():
            # The reader then ends the connection at once: a flooder goes on
            # sending after the close frame, and every frame would be read
            # until Tornado gives up waiting for the answer (5 s).
            log.warning("ws.too_many_refused", reason="rate_limited", frame="control")
            self._close_by_server(CLOSE_POLICY, "too many refused frames")
        return False

    def _charge(self) -> bool:
        # The user's bucket is per room: a room's pace is what --rate-limit
        # keeps; the address bucket bounds everything one client sends.
        identity = self.identity or Identity(self.user)
        user, overall = identity.budgets(self._client_key)
        per_user = self._limits.per_user.take(f"{self.room}\x00{user}")
        per_client = self._limits.per_client.take(overall)
        return per_user and per_client

    async def _publish(self, request: ChatRequest) -> None:
        draft = Draft(self.room, self.user, request.text, request.client_id)
        started = time.perf_counter()
        try:
            published = await self._bus.publish(draft)
        except BusUnavailable as exc:
            PUBLISH_FAILED.warning(reason=str(exc))
            raise FrameError("unavailable", "the message was not stored, try again", request.client_id) from None
        except RateLimited:  # the user's budget over every process; the local bucket passed it
            raise FrameError("rate_limited", "too many messages, slow down", request.client_id) from None
        finally:
            self._metrics.publish_took(time.perf_counter() - started)
        self._messages_in += 1
        message = published.message
        fields: dict[str, Any] = {"msg_id": message.id, "bytes": len(request.text.encode())}
        if published.duplicate:
            fields["resend"] = True
        else:
            self._metrics.message_published()
        if self._settings.log_message_text:
            fields["text"] = request.text
        log.info("message.accepted", **fields)
        if request.client_id is not None:
            self.send_frame(frames.ack(request.client_id, message.id))

    def _reject(self, error: FrameError) -> None:
        self._metrics.message_rejected(error.code)
        self._log_budget = self._log_budget or TokenBucket(LOGGED_PER_SECOND, LOGGED_BURST)
        if self._log_budget.take():
            extra = {"suppressed": self._unlogged} if self._unlogged else {}
            self._unlogged = 0
            log.info("message.rejected", reason=error.code, **extra)
        else:
            self._unlogged += 1
        if error.code == "unavailable":  # the server's failure: a client resending through it is never junk
            self.send_frame(error.frame())
            return
        if error.code == "rate_limited":
            budget = self._over_rate = self._over_rate or TokenBucket(OVER_RATE_PER_SECOND, OVER_RATE_BURST)
        else:
            budget = self._refusals = self._refusals or TokenBucket(REFUSED_PER_SECOND, REFUSED_BURST)
        if budget.take():
            self.send_frame(error.frame())
        else:
            log.warning("ws.too_many_refused", reason=error.code)
            self._close_by_server(CLOSE_POLICY, "too many refused frames")

    # ---- outbound --------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Queue a frame for this client without waiting (the bus's Member).

        The bytes not yet handed to the kernel are counted; past
        ``send_buffer_limit`` the client is not keeping up and is dropped with
        1008 so that it holds no memory and slows nobody. Frames go straight
        to the stream (handlers/websocket/writer.py says why).
        """
        size = len(frame)
        if self._unsent + size > self._settings.send_buffer_limit:
            self._drop_slow_client()
            return
        written = write_text(self, frame)
        if written is Written.GONE:
            return
        self._messages_out += 1
        if written is Written.KERNEL:
            return
        self._unsent += size
        self._last_write = written
        written.add_done_callback(lambda done: self._flushed(done, size))

    def _drop_slow_client(self) -> None:
        if self._server_close_code is None:  # frames queued after the drop come here again: count it once
            self._metrics.slow_client_dropped()
        log.warning("ws.slow_consumer", conn=self.conn, room=self.room, user=self.user, unsent=self._unsent)
        abort = aborter(self)
        self._close_by_server(CLOSE_POLICY, "too slow: unsent data over the limit")
        # The close frame waits behind the unread data and a client that does
        # not read will not answer it: free the connection now, not in 5 s.
        abort()

    def _flushed(self, done: Any, size: int) -> None:
        self._unsent -= size
        if not done.cancelled():
            done.exception()  # a closed stream is reported by on_close, not here

    def _close_by_server(self, code: int, reason: str) -> None:
        self._server_close_code = code
        self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is not None and self._server_close_code is None:
            self._server_close_code = code
        super().close(code, reason)
