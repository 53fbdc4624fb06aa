"""Edits, deletions and older history on Redis: one script each, on the room's shard.

``change.lua`` checks a change and adds it to the room's stream as an entry
of its own (so it travels in the room's order, through the consumer groups
like a message); ``older.lua`` reads the page before an id. What the entries
mean for a reader is bus/changes.py's, shared with the in-process backend.
"""

from __future__ import annotations

from typing import Any

from bus.changes import fold, refused
from bus.message import Change, ChangeDraft, IdKey, Message, Older
from bus.redis.groups import decode_flat
from bus.redis.publish import RoomWriter


class RoomChanges(RoomWriter):
    async def change(self, draft: ChangeDraft) -> Change:
        k, room = self._keys, draft.room
        keys = [k.stream(room), k.born(room), k.trimmed(room), k.channel(room), k.size(room)]
        window_ms = int(draft.window * 1000) if draft.window is not None and draft.kind == "edit" else 0
        args: list[Any] = [draft.target, draft.kind, draft.user, draft.text, draft.author or "", window_ms]
        args += [self._retention, self._ttl_ms, self._history_bytes]
        # Not idempotent: a deletion run twice would answer not_found to the one who made it.
        reply = await self._redis.script(keys[0], self._scripts.change, keys, args, "change", idempotent=False)
        if reply[0] != "ok":
            raise refused(str(reply[2]), draft)
        return Change(str(reply[1]), room, draft.user, draft.kind, draft.target, draft.text)

    async def older(self, room: str, before: IdKey, limit: int) -> Older:
        key = self._keys.stream(room)
        reply = await self._redis.script(key, self._scripts.older, [key], [str(before), limit], "older")
        below, later, complete = reply
        entries = [e for e in (decode_flat(room, entry) for entry in reversed(below)) if e is not None]
        entries += [e for e in (decode_flat(room, entry) for entry in later) if e is not None]
        shown = [e for e in fold(entries, None) if isinstance(e, Message)]
        return Older(shown, bool(complete))
