"""The API's room routes: publish and read messages, delete one, who is in a room, which rooms have members.

A message published here takes a member's path: the RoomBus stores it in
the room's order with an id of the room's log, members on every process get
it through the bus, later joins replay it. Its ``idempotency_key`` is the
message's ``client_id``, so the bus's resend check (one script on Redis)
makes the same key in the same room, from the same author, within the
resend window one message, through any number of processes at once.
"""

from __future__ import annotations

from typing import Any

import structlog

from api import inputs
from api.base import ApiError, ApiHandler
from bus.backend import BusUnavailable, ChangeRefused
from bus.message import ChangeDraft, Draft, IdKey, Message
from bus.user_key import user_fields, user_key

log = structlog.get_logger("chat.api")

HISTORY_DEFAULT, HISTORY_MAX = 50, 1000
ROOMS_DEFAULT, ROOMS_MAX = 100, 1000
SYSTEM_USER = "system"


def unavailable(exc: BusUnavailable) -> ApiError:
    log.warning("api.bus_failed", reason=str(exc))
    return ApiError(503, "unavailable", "the chat is unavailable, try again")


class MessagesHandler(ApiHandler):
    route = "/api/rooms/{room}/messages"

    async def post(self, room: str) -> None:
        room = inputs.room(room)
        body = self.json_body()
        text = inputs.text(body.get("text"), self.context.settings.max_message_chars)
        name = inputs.display_name(body.get("user", SYSTEM_USER))
        user_id = None if body.get("user_id") is None else inputs.user_id(body["user_id"])
        key = inputs.idempotency_key(body.get("idempotency_key"))
        try:
            published = await self.context.bus.publish(Draft(room, user_key(name, user_id), text, key, charged=False))
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        message = published.message
        if not published.duplicate:
            self.context.metrics.message_published()
        extra: dict[str, Any] = {"resend": True} if published.duplicate else {}
        if self.context.settings.log_message_text:
            extra["text"] = text
        log.info("message.accepted", room=room, msg_id=message.id, bytes=len(text.encode()), via="api", **extra)
        self.reply(201, {"id": message.id, "duplicate": published.duplicate})

    async def get(self, room: str) -> None:
        room = inputs.room(room)
        self.no_body()
        since = inputs.message_id(self.get_query_argument("since", None), "since")
        before = inputs.message_id(self.get_query_argument("before", None), "before")
        limit = inputs.count(self.get_query_argument("limit", None), "limit", HISTORY_DEFAULT, HISTORY_MAX)
        try:
            messages, complete = await self._page(room, since, before, limit)
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        frames = b",".join(message.frame() for message in messages)
        self.reply(200, b'{"messages":[' + frames + b'],"complete":' + (b"true" if complete else b"false") + b"}")

    async def _page(
        self, room: str, since: IdKey | None, before: IdKey | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Oldest first; ``complete``: nothing older retained (before, or neither), nothing newer left out (since)."""
        bus = self.context.bus
        if before is not None:
            page = await bus.older(room, before, limit)
            kept = [m for m in page.messages if since is None or m.key > since]
            return kept, page.complete or len(kept) < len(page.messages)
        if since is not None:
            history = await bus.history(room, since, limit)
            after = [m for m in history.messages if isinstance(m, Message)]
            return after[:limit], history.complete and len(after) <= limit
        history = await bus.history(room, None, limit + 1)
        shown = [m for m in history.messages if isinstance(m, Message)]
        return shown[-limit:], len(shown) <= limit


class MessageHandler(ApiHandler):
    route = "/api/rooms/{room}/messages/{id}"

    async def delete(self, room: str, message_id: str) -> None:
        room = inputs.room(room)
        self.no_body()
        target = inputs.required_id(message_id, "id")
        try:
            change = await self.context.bus.change(ChangeDraft(room, SYSTEM_USER, "delete", str(target)))
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        except ChangeRefused as refused:
            raise ApiError(404, refused.code, refused.detail) from None
        log.info("message.deleted", room=room, msg_id=str(target), change_id=change.id, via="api")
        self.reply(200, {"id": str(target), "deleted": True})


class MembersHandler(ApiHandler):
    route = "/api/rooms/{room}/members"

    async def get(self, room: str) -> None:
        room = inputs.room(room)
        self.no_body()
        try:
            members = await self.context.bus.members(room)
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        self.reply(200, {"members": [member_json(user, n) for user, n in members]})


def member_json(key: str, connections: int) -> dict[str, Any]:
    return {**user_fields(key), "connections": connections}


class RoomsHandler(ApiHandler):
    route = "/api/rooms"

    async def get(self) -> None:
        self.no_body()
        cursor = self.get_query_argument("cursor", None) or ""
        if cursor:
            inputs.room(cursor)
        limit = inputs.count(self.get_query_argument("limit", None), "limit", ROOMS_DEFAULT, ROOMS_MAX)
        try:
            found = await self.context.bus.rooms(cursor, limit + 1)
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        page = found[:limit]
        following = page[-1][0] if len(found) > limit else None
        self.reply(200, {"rooms": [{"room": room, "members": users} for room, users in page], "next": following})
