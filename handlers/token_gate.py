"""Token mode, one connection at a time: how a token arrives, what it admits to, refreshes, expiry.

A token comes in the host site's cookie (read at the handshake) or in the
first frame, ``{"type": "auth", "token": ...}``, within ``--auth-timeout``.
Until one admits the connection the server sends nothing and reads nothing
else: no token in time, a bad or expired one, or any other first frame
closes with 4001 and a reason; a private room the token does not grant
closes with 4003. Once admitted, ``{"type": "refresh", "token": ...}`` (or
another ``auth``) replaces the token: same ``sub``, and the connection lives
on to the new ``exp`` (answered ``refreshed``); another ``sub``, or any
refusal, closes as above. A connection whose ``exp`` passes unrefreshed is
closed with 4001 ``token expired``. Every refusal is logged once, with its
reason and never the token.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Protocol

import orjson
import structlog
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError

from bus import frames
from config.settings import Settings
from handlers.identity import Identity
from handlers.tokens import BAD_TOKEN, NOT_ALLOWED, TOKEN_EXPIRED, TOKEN_REQUIRED, Grant, TokenRefused, TokenVerifier

log = structlog.get_logger("chat.ws")

CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_ALLOWED = 4003
# Query arguments that would carry a token (proxies log query strings), and
# the shape of a JWT wherever it appears in one.
_TOKEN_ARGUMENTS = frozenset({"token", "access_token", "id_token", "jwt", "auth", "authorization", "bearer"})
_JWT_SHAPE = re.compile(rb"eyJ[\w-]*\.[\w-]*\.")


class Socket(Protocol):
    def send_frame(self, frame: bytes) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def token_in_query(arguments: dict[str, list[bytes]]) -> bool:
    """Whether a URL's query carries what looks like a token, by its name or its shape."""
    for name, values in arguments.items():
        if name.lower() in _TOKEN_ARGUMENTS or any(_JWT_SHAPE.search(value) for value in values):
            return True
    return False


async def open_gate(verifier: TokenVerifier, request: HTTPServerRequest, room: str, settings: Settings) -> "TokenGate":
    """At the handshake: a token in the URL is refused (400: access logs keep queries); the cookie's is checked."""
    if token_in_query(request.query_arguments):
        log.info("ws.auth_refused", status=400, reason="token in the URL", client=request.remote_ip)
        raise HTTPError(400, reason="tokens are not accepted in the URL")
    gate = TokenGate(verifier, room, settings.auth_timeout)
    cookie = request.cookies.get(settings.token_cookie)
    await gate.present_cookie(cookie.value if cookie is not None else None)
    return gate


class TokenGate:
    """The token state of one connection: its grant, and the timer that ends it (auth wait or expiry)."""

    __slots__ = ("_verifier", "_room", "_auth_timeout", "grant", "_refused", "_timer")

    def __init__(self, verifier: TokenVerifier, room: str, auth_timeout: float) -> None:
        self._verifier = verifier
        self._room = room
        self._auth_timeout = auth_timeout
        self.grant: Grant | None = None  # None until a token admits the connection
        self._refused: TokenRefused | None = None  # the cookie's token, refused at the handshake
        self._timer: asyncio.TimerHandle | None = None

    @property
    def identity(self) -> Identity | None:
        return self.grant.identity if self.grant is not None else None

    def slot(self, client: str) -> str:
        """Whose connection slot the handshake takes: the cookie token's user, else the address."""
        return self.grant.identity.charged_as if self.grant is not None else client

    async def present_cookie(self, token: str | None) -> None:
        """At the handshake: check the cookie's token, if any (a refusal is told once the socket is open)."""
        if not token:
            return
        try:
            self.grant = await self._verifier.verify(token)
        except TokenRefused as refused:
            self._refused = refused

    def open(self, socket: Socket) -> Identity | None:
        """The socket is open: the identity to join with now, or None (waiting for an auth frame, or closed)."""
        if self._refused is not None:
            self._refuse(socket, CLOSE_UNAUTHENTICATED, self._refused)
            return None
        if self.grant is None:
            delay = self._auth_timeout
            self._timer = asyncio.get_running_loop().call_later(delay, self._timed_out, socket)
            return None
        return self._admit(socket, self.grant)

    def wants(self, data: str | bytes) -> bool:
        """Whether a frame is the gate's to handle: every frame until admitted, then auth and refresh frames."""
        if self.grant is None:
            return True
        return isinstance(data, str) and ('"refresh"' in data or '"auth"' in data)

    async def take(self, socket: Socket, data: str | bytes) -> Identity | bool:
        """Handle a frame ``wants``: the identity an auth frame admits, True when handled, False when not ours."""
        token = _token_of(data)
        if self.grant is None:
            self._cancel_timer()
            if token is None:
                self._refuse(socket, CLOSE_UNAUTHENTICATED, TokenRefused(TOKEN_REQUIRED, "first frame was not auth"))
                return True
            grant = await self._verified(socket, token)
            return (self._admit(socket, grant) or True) if grant is not None else True
        if token is None:
            return False  # a chat message that merely mentions the word
        grant = await self._verified(socket, token)
        if grant is not None:
            self._refresh(socket, grant)
        return True

    def stop(self) -> None:
        """The connection ended: no timer may fire on it."""
        self._cancel_timer()

    # ---- inside ---------------------------------------------------------------

    async def _verified(self, socket: Socket, token: object) -> Grant | None:
        try:
            return await self._verifier.verify(token)
        except TokenRefused as refused:
            self._refuse(socket, CLOSE_UNAUTHENTICATED, refused)
            return None

    def _admit(self, socket: Socket, grant: Grant) -> Identity | None:
        if not self._verifier.admits(grant, self._room):
            self.grant = None
            self._refuse(socket, CLOSE_NOT_ALLOWED, TokenRefused(NOT_ALLOWED, "private room not granted"))
            return None
        self.grant = grant
        self._expire_at(socket, grant.exp)
        return grant.identity

    def _refresh(self, socket: Socket, grant: Grant) -> None:
        current = self.grant
        if current is None or grant.identity.user_id != current.identity.user_id:
            self._refuse(socket, CLOSE_UNAUTHENTICATED, TokenRefused(BAD_TOKEN, "refresh with another sub"))
            return
        if not self._verifier.admits(grant, self._room):
            refused = TokenRefused(NOT_ALLOWED, "the new token does not grant the room")
            self._refuse(socket, CLOSE_NOT_ALLOWED, refused)
            return
        # The identity stays the one the connection joined with: a new name shows from the next connection.
        self.grant = Grant(current.identity, grant.exp, grant.rooms)
        self._expire_at(socket, grant.exp)
        socket.send_frame(frames.refreshed(grant.exp))

    def _expire_at(self, socket: Socket, exp: float) -> None:
        self._cancel_timer()
        delay = max(0.0, exp - time.time())  # no leeway for a live connection
        self._timer = asyncio.get_running_loop().call_later(delay, self._expired, socket)

    def _expired(self, socket: Socket) -> None:
        self._timer = None
        self._refuse(socket, CLOSE_UNAUTHENTICATED, TokenRefused(TOKEN_EXPIRED, "exp passed unrefreshed"))

    def _timed_out(self, socket: Socket) -> None:
        self._timer = None
        detail = f"no token within {self._auth_timeout:g} s"
        self._refuse(socket, CLOSE_UNAUTHENTICATED, TokenRefused(TOKEN_REQUIRED, detail))

    def _refuse(self, socket: Socket, code: int, refused: TokenRefused) -> None:
        self._cancel_timer()
        log.info("ws.auth_refused", code=code, reason=refused.reason, detail=refused.detail)
        socket.close(code, refused.reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _token_of(data: str | bytes) -> object | None:
    """The token of an auth or refresh frame (whatever its type, checked by the verifier); None for other frames."""
    if isinstance(data, bytes):
        return None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("type") not in ("auth", "refresh"):
        return None
    return body.get("token")
