"""The API's moderation routes: disconnect (and ban) a user, mute one, list and lift bans and mutes.

A user here is a user id in token mode, else a display name: whoever the
room sockets know them as (handlers/moderated.py). A ban or mute is stored
before the disconnect goes out, so a tab that reconnects at once is refused.
"""

from __future__ import annotations

import structlog

from api import inputs
from api.base import ApiError, ApiHandler
from bus.backend import BusUnavailable
from bus.moderation import Sanction, now_ms

log = structlog.get_logger("chat.api")


class ModerationHandler(ApiHandler):
    def user(self, value: object, field: str = "user") -> str:
        return inputs.moderated_user(value, self.context.settings.token_mode, field)

    def path_user(self, raw: str) -> str:
        return self.user(raw, "user")  # Tornado has percent-decoded it

    def sanction(self, kind: str, room: str | None, user: str, seconds: int | None) -> Sanction:
        return Sanction(kind, room, user, None if seconds is None else now_ms() + seconds * 1000)

    async def lift(self, kind: str, room: str | None, user: str) -> None:
        try:
            lifted = await self.context.moderation.lift(kind, room, user)
        except BusUnavailable as exc:
            log.warning("api.bus_failed", reason=str(exc))
            raise ApiError(503, "unavailable", "the chat is unavailable, try again") from None
        if not lifted:
            raise ApiError(404, "not_found", f"no {kind} of that user here")
        log.info(f"moderation.{kind}_lifted", target_room=room, target=user)
        self.reply(200, {"lifted": True})

    def listing(self, kind: str, room: str | None) -> None:
        self.no_body()
        self.reply(200, {f"{kind}s": [s.as_json() for s in self.context.moderation.listing(kind, room)]})


class DisconnectHandler(ModerationHandler):
    route = "/api/users/{user}/disconnect"

    async def post(self, raw_user: str) -> None:
        user = self.path_user(raw_user)
        body = self.json_body()
        room = None if body.get("room") is None else inputs.room(_string(body["room"], "room"))
        ban_seconds = inputs.seconds(body.get("ban_seconds"), "ban_seconds", required=False)
        ban = None if ban_seconds is None else self.sanction("ban", room, user, ban_seconds)
        try:
            if ban is not None:
                await self.context.moderation.impose(ban)
            await self.context.moderation.disconnect(user, room)
        except BusUnavailable as exc:
            log.warning("api.bus_failed", reason=str(exc))
            raise ApiError(503, "unavailable", "the chat is unavailable, try again") from None
        log.info("moderation.disconnect", target=user, target_room=room, ban_seconds=ban_seconds)
        self.reply(200, {"user": user, "room": room, "ban": None if ban is None else ban.as_json()})


class RoomBansHandler(ModerationHandler):
    route = "/api/rooms/{room}/bans"

    def get(self, room: str) -> None:
        self.listing("ban", inputs.room(room))


class RoomLiftHandler(ModerationHandler):
    """Lift the user's sanction of ``kind`` in one room: bans and mutes alike."""

    kind = "ban"

    async def delete(self, room: str, raw_user: str) -> None:
        room = inputs.room(room)
        self.no_body()
        await self.lift(self.kind, room, self.path_user(raw_user))


class RoomBanHandler(RoomLiftHandler):
    route = "/api/rooms/{room}/bans/{user}"
    kind = "ban"


class BansHandler(ModerationHandler):
    route = "/api/bans"

    def get(self) -> None:
        self.listing("ban", None)


class BanHandler(ModerationHandler):
    route = "/api/bans/{user}"

    async def delete(self, raw_user: str) -> None:
        self.no_body()
        await self.lift("ban", None, self.path_user(raw_user))


class MutesHandler(ModerationHandler):
    route = "/api/rooms/{room}/mutes"

    def get(self, room: str) -> None:
        self.listing("mute", inputs.room(room))

    async def post(self, room: str) -> None:
        room = inputs.room(room)
        body = self.json_body()
        user = self.user(body.get("user"))
        seconds = inputs.seconds(body.get("seconds"), "seconds", required=True)
        mute = self.sanction("mute", room, user, seconds)
        try:
            await self.context.moderation.impose(mute)
        except BusUnavailable as exc:
            log.warning("api.bus_failed", reason=str(exc))
            raise ApiError(503, "unavailable", "the chat is unavailable, try again") from None
        log.info("moderation.mute", target=user, target_room=room, seconds=seconds)
        self.reply(201, mute.as_json())


class MuteHandler(RoomLiftHandler):
    route = "/api/rooms/{room}/mutes/{user}"
    kind = "mute"


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f'"{field}" must be a string')
    return value
