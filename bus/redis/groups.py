"""What this process knows of its consumer group on one room's stream, the frames read off Redis, and its marks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson
from redis.exceptions import ResponseError

from bus.message import CHANGE_KINDS, NOTICE_KINDS, Change, Entry, IdKey, Message, Notice, id_key
from bus.redis.wire import Wire

_ZERO = IdKey(0, 0)


def lost_group(exc: BaseException) -> bool:
    """A read failed because the group or stream vanished (a Redis restarted empty, a TTL, a janitor)."""
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def decode_rung(room: str, payload: str) -> Entry | None:
    """A doorbell's entry; None if it is none.

    ``publish.lua`` rings with ``[id, user, text, client_id or false]``,
    ``change.lua`` with ``[id, user, text, false, kind, target]``.
    """
    try:
        message_id, user, body, client_id, *change = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if not isinstance(message_id, str) or not isinstance(user, str) or not isinstance(body, str):
        return None
    if change:
        return _change(message_id, room, user, body, change)
    return Message(message_id, room, user, body, client_id if isinstance(client_id, str) else None)


def _change(message_id: str, room: str, user: str, text: str, change: list[Any]) -> Change | None:
    if len(change) != 2 or change[0] not in CHANGE_KINDS or not isinstance(change[1], str):
        return None
    return Change(message_id, room, user, change[0], change[1], text)


def decode_notice(room: str, payload: str) -> Notice | None:
    kind, sep, user = payload.partition(":")
    if not sep or not user or kind not in NOTICE_KINDS:
        return None
    return Notice(room, kind, user)


@dataclass(eq=False)
class RoomGroup:
    """This process's view of its group on one room's stream.

    ``caught_up``: every entry up to the last doorbell heard has been
    delivered, so the next doorbell's entry can be delivered as it comes.
    A group starts behind (and falls behind whenever a connection is remade):
    its doorbells then only ask for a read, which catches it up.
    """

    name: str
    key: str
    born: str | None = None  # the room's epoch as this process knows it
    cursor: str = ""  # the last id delivered, where the group is set before a read ('' until it exists)
    delivered: IdKey = _ZERO  # the same as a key: entries at or before it are dropped
    caught_up: bool = False

    def grouped(self, status: str, last_delivered: str, born: str | None) -> None:
        """Take in what ensure_group.lua found or did."""
        if not self.cursor:  # first subscription in this run
            self.born, self.cursor = born, last_delivered
            self.delivered = id_key(last_delivered) if status == "created" else _ZERO
        elif status == "reset":  # a new epoch: every entry in the stream is new here
            self.born, self.cursor, self.delivered = born, "0-0", _ZERO

    def take(self, message: Entry) -> bool:
        """True for an entry not delivered yet in this run (it now is); False for one to drop."""
        if message.key <= self.delivered:
            return False
        self.delivered, self.cursor = message.key, message.id
        if self.born is None:  # the group saw the room's very first entry
            self.born = message.id
        return True


def decode_fields(message_id: str, room: str, fields: dict[str, str]) -> Entry | None:
    """A stream entry as a Message or a Change (fields ``op``, ``of``); None for one deleted since it was read."""
    if not fields:
        return None
    if "of" in fields:
        return _change(
            message_id, room, fields.get("user", ""), fields.get("text", ""), [fields.get("op"), fields["of"]]
        )
    return Message(message_id, room, fields.get("user", ""), fields.get("text", ""), fields.get("cid"))


def decode_flat(room: str, entry: Sequence[Any]) -> Entry | None:
    """An entry as Lua returns it: ``[id, [field, value, ...]]``."""
    message_id, flat = entry[0], entry[1] or []
    return decode_fields(message_id, room, dict(zip(flat[0::2], flat[1::2])))


async def mark_groups(wire: Wire, groups: Iterable[RoomGroup], marked: dict[str, str], name: str) -> None:
    """Set each group whose cursor moved since its last mark to that cursor (``marked``: room -> cursor set).

    A room delivered from its doorbells is never read, so its group stays
    where the last read left it; marked now and then, it says in Redis how
    far this process has delivered, for ``server.py status`` and the admin
    page, even once the process has stopped. Run by the room's reader, in
    its own task, so that a mark never lands between a read's own reset of
    the group and that read. A failure is left to the next mark (or read).
    """
    held = {group.name: group for group in groups}
    for room in [room for room in marked if room not in held]:
        del marked[room]
    # The cursors as sent: deliveries go on while the replies are awaited.
    moved = [
        (group, group.cursor) for group in held.values() if group.cursor and marked.get(group.name) != group.cursor
    ]
    sent = [wire.send("XGROUP", "SETID", group.key, name, cursor) for group, cursor in moved]
    replies = await asyncio.gather(*sent, return_exceptions=True)
    for (group, cursor), reply in zip(moved, replies):
        if not isinstance(reply, BaseException):
            marked[group.name] = cursor
