"""Edits and deletions in a room's log: how they shape what a reader is shown (pure, no I/O).

A room's log holds messages and changes (``Change``: an edit or a deletion
of an earlier message) in one order. A change always comes after the
message it changes, so the log itself says what every message is now; no
second record has to be kept in step with it (and trimming, which removes
the oldest entries first, never removes a change before its message). The
in-process backend runs these functions over its deque; the Redis backend's
scripts (``bus/redis/scripts/history.lua``, ``older.lua``, ``change.lua``)
choose the entries the same way and the results are folded here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

from bus.backend import ChangeRefused
from bus.message import Change, ChangeDraft, Entry, IdKey, Message, Older, id_key


def fold(entries: Iterable[Entry], since: IdKey | None) -> list[Entry]:
    """Messages as they are now (edited text, deleted ones gone), oldest first.

    ``entries`` are in the log's order. A change of a message among them is
    applied to it; a change of a message at or before ``since`` (which the
    reader already has) is kept, in its place, for the reader to apply; any
    other change is of a message the reader will not be shown and is dropped.
    """
    shown: list[Entry | None] = []
    where: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, Message):
            where[entry.id] = len(shown)
            shown.append(entry)
            continue
        at = where.get(entry.target)
        if at is not None:
            target = shown[at]
            if isinstance(target, Message):
                shown[at] = None if entry.kind == "delete" else replace(target, text=entry.text, edited_ts=entry.ts)
        elif since is not None and id_key(entry.target) <= since:
            shown.append(entry)
    return [entry for entry in shown if entry is not None]


def tail(newest_first: Iterable[Entry], limit: int, deleted: set[str] | None = None) -> tuple[list[Entry], bool]:
    """The entries back to the ``limit``-th message still shown, oldest first, and whether that is all of them.

    Deletions met on the way (they come before their messages, newest first)
    and those in ``deleted`` (made later than the entries read) hide their
    messages, which then do not count.
    """
    hidden = set(deleted or ())
    taken: list[Entry] = []
    shown = 0
    for entry in newest_first:
        if isinstance(entry, Change):
            if entry.kind == "delete":
                hidden.add(entry.target)
        elif entry.id not in hidden:
            if shown == limit:
                taken.reverse()
                return taken, False
            shown += 1
        taken.append(entry)
    taken.reverse()
    return taken, True


def older(log: Sequence[Entry], before: IdKey, limit: int) -> Older:
    """Up to ``limit`` messages just before ``before`` as they are now, from a whole log (oldest first)."""
    later: list[Entry] = [e for e in log if isinstance(e, Change) and e.key >= before]
    below = (e for e in reversed(log) if e.key < before)
    page, complete = tail(below, limit, {c.target for c in later if isinstance(c, Change) and c.kind == "delete"})
    return Older([e for e in fold(page + later, None) if isinstance(e, Message)], complete)


def target_of(log: Sequence[Entry], draft: ChangeDraft, now_ms: int) -> Message:
    """The message a change is for, from a whole log (oldest first); ChangeRefused when it may not be made."""
    wanted = id_key(draft.target)
    found: Entry | None = None
    for entry in reversed(log):
        if entry.key < wanted:
            break
        if isinstance(entry, Change) and entry.kind == "delete" and entry.target == draft.target:
            raise refused("deleted", draft)
        if entry.key == wanted:
            found = entry
            break
    if not isinstance(found, Message):
        raise refused("gone", draft)
    if draft.author is not None and found.user != draft.author:
        raise refused("author", draft)
    if draft.kind == "edit" and draft.window is not None and now_ms - found.ts > draft.window * 1000:
        raise refused("late", draft)
    return found


def refused(why: str, draft: ChangeDraft) -> ChangeRefused:
    """The refusal for a reason ``change.lua`` names too: gone, deleted, author or late."""
    if why == "deleted":
        return ChangeRefused("not_found", "that message was deleted")
    if why == "author":
        return ChangeRefused("not_allowed", "only its author may change a message")
    if why == "late":
        return ChangeRefused(
            "not_allowed", f"a message may be edited for {draft.window or 0:g} seconds after it was sent"
        )
    return ChangeRefused("not_found", "no such message in this room's history")
