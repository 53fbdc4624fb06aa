"""Older pages, edits and deletions asked for on the room WebSocket: the bus does them, this says who may.

A member may edit or delete only their own messages (edits within the edit
window); the bus checks that as it stores the change, since another caller
(the host application) may delete anyone's. Refusals become error frames:
``not_found``, ``not_allowed``, ``unavailable``; the connection goes on.
"""

from __future__ import annotations

import structlog

from bus import frames
from bus.backend import BusUnavailable, ChangeRefused
from bus.message import ChangeDraft, id_key
from bus.room_bus import RoomBus
from config.settings import Settings
from handlers.inbound import DeleteRequest, EditRequest, FrameError, OlderRequest, RoomRequest

log = structlog.get_logger("chat.ws")


async def serve(bus: RoomBus, room: str, user: str, settings: Settings, request: RoomRequest) -> bytes | None:
    """Carry out one request; the frame to answer its sender with (None: the change comes back through the bus)."""
    try:
        if isinstance(request, OlderRequest):
            return await _older(bus, room, request, settings.send_buffer_limit // 4)
        await _change(bus, room, user, settings, request)
    except BusUnavailable as exc:
        log.warning("bus.request_failed", reason=str(exc))
        raise FrameError("unavailable", "the chat is unavailable, try again") from None
    except ChangeRefused as refused:
        raise FrameError(refused.code, refused.detail) from None
    return None


async def _older(bus: RoomBus, room: str, request: OlderRequest, budget: int) -> bytes:
    """The page before ``request.before``; cut (its oldest left for the next request) to stay within ``budget`` bytes.

    A page of long messages could otherwise pass the slow-client bound in one
    frame and drop a reader who reads.
    """
    page = await bus.older(room, id_key(request.before), request.limit)
    encoded: list[bytes] = []
    size = 0
    for message in reversed(page.messages):
        frame = message.frame()
        if encoded and size + len(frame) > budget:
            return frames.older(request.before, reversed(encoded), False)
        encoded.append(frame)
        size += len(frame)
    return frames.older(request.before, reversed(encoded), page.complete)


async def _change(bus: RoomBus, room: str, user: str, settings: Settings, request: EditRequest | DeleteRequest) -> None:
    if isinstance(request, EditRequest):
        window = settings.edit_window or None  # 0: no limit
        draft = ChangeDraft(room, user, "edit", request.id, request.text, author=user, window=window)
    else:
        draft = ChangeDraft(room, user, "delete", request.id, author=user)
    change = await bus.change(draft)
    event = "message.edited" if draft.kind == "edit" else "message.deleted"
    log.info(event, msg_id=request.id, change_id=change.id)


__all__ = ["serve"]
