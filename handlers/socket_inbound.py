"""The room socket's inbound frames: every frame charged, then typing, a message, or a room request; refusals.

What a client may send is parsed in handlers/inbound.py; room requests
(older pages, edits, deletions) are served by handlers/room_requests.py.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from bus import frames
from bus.backend import BusUnavailable, RateLimited
from bus.message import Draft
from config.logging import HotLog
from handlers import room_requests
from handlers.identity import Identity
from handlers.inbound import ChatRequest, EditRequest, FrameError, TypingRequest, parse_frame
from handlers.moderated import muted
from handlers.rate_limit import TokenBucket
from handlers.sampled_log import PUBLISH_FAILED
from handlers.socket_join import Joining
from handlers.socket_state import CLOSE_POLICY

log = structlog.get_logger("chat.ws")
traffic_log = HotLog("chat.ws")  # the line per accepted message

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


class Inbound(Joining):
    """The inbound part of ``RoomSocket``: ``on_message``, the control frames' charge, and refusals."""

    __slots__ = ()

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
        traffic_log.info("message.accepted", fields)
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
