"""The host application's moderation at the room socket: bans refuse joins, mutes refuse messages, disconnects close.

Moderation knows a user by their user id in token mode, else by their
display name. The checks read the moderation store's mirror (no round trip);
a disconnect heard from any process closes this process's matching sockets.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import structlog

from bus.moderation import Moderation
from handlers.identity import Identity

log = structlog.get_logger("chat.ws")

CLOSE_MODERATED = 4003  # the close code of a disconnect or a refused (banned) join


class ModeratedSocket(Protocol):
    room: str
    identity: Identity | None

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def moderated_as(identity: Identity) -> str:
    return identity.user_id if identity.user_id is not None else identity.name


def banned(moderation: Moderation | None, identity: Identity, room: str) -> bool:
    return moderation is not None and moderation.banned(room, moderated_as(identity))


def muted(moderation: Moderation | None, identity: Identity | None, room: str) -> bool:
    return moderation is not None and identity is not None and moderation.muted(room, moderated_as(identity))


def close_user(sockets: Iterable[object], user: str, room: str | None) -> int:
    """Close (4003) every socket of ``user`` here, to ``room`` or to any room; how many were closed."""
    closed = 0
    for socket in list(sockets):
        identity = getattr(socket, "identity", None)
        if not isinstance(identity, Identity) or moderated_as(identity) != user:
            continue
        if room is not None and getattr(socket, "room", None) != room:
            continue
        socket.close(CLOSE_MODERATED, "disconnected by a moderator")  # type: ignore[attr-defined]
        closed += 1
    if closed:
        log.info("ws.moderator_disconnect", target_room=room, closed=closed)
    return closed
