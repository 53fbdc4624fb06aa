"""Messages and their ids: pure data and encodings, no I/O.

An id is ``"<ms>-<seq>"``, the Redis stream id form, on both backends. Ids are
compared as the pair of numbers (``id_key``), never as strings.

Notices (presence, join, leave, typing) are the other kind of frame: ephemeral,
never stored, never replayed, and outside the messages' order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from bus import frames

ZERO_ID = "0-0"


class IdKey(NamedTuple):
    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


_MAX_PART = 2**64 - 1  # a Redis stream id is two unsigned 64-bit numbers
_MAX_DIGITS = 20
_new_tuple = tuple.__new__  # IdKey(...) runs NamedTuple's Python __new__; ids are parsed twice per message


def id_key(message_id: str) -> IdKey:
    """Parse ``"<ms>-<seq>"``: ASCII digits, each part within 64 bits; raise ValueError for anything else.

    ``str.isdigit`` alone would let other scripts' digits (Arabic-Indic ...)
    through to the bus: each part must be ASCII too.
    """
    ms, dash, seq = message_id.partition("-")
    if not (dash and ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValueError(f"not a message id: {message_id[:50]!r}")
    if len(ms) <= _MAX_DIGITS and len(seq) <= _MAX_DIGITS:  # before int(): a 10,000-digit "id" costs
        key = (int(ms), int(seq))
        if key[0] <= _MAX_PART and key[1] <= _MAX_PART:
            return _new_tuple(IdKey, key)
    raise ValueError(f"message id out of range: {message_id[:50]!r}")


def stored_key(message_id: str) -> IdKey:
    """The key of an id the bus itself gave (Redis's ``XADD``, the in-process bus, its data file).

    Twice per message (the publish's answer, the delivery), so without
    ``id_key``'s checks, which are for ids a client or an operator sends:
    half its cost. A malformed id still raises ValueError.
    """
    ms, _, seq = message_id.partition("-")
    return _new_tuple(IdKey, (int(ms), int(seq)))


class _Logged:
    """An entry of a room's log (a message or a change): its id parsed once, for ordering and ``ts``."""

    __slots__ = ()
    id: str
    key: IdKey

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", stored_key(self.id))

    @property
    def ts(self) -> int:
        return self.key.ms


# The classes made per chat message (Draft, Published, Message) are not frozen: a frozen dataclass's
# __init__ sets each field through object.__setattr__, 1.1 µs more per Message (bench/RESULTS.md,
# "CPU per delivery"). Nothing assigns to one after it is made; they hash as the frozen ones did.
@dataclass(slots=True, unsafe_hash=True)
class Message(_Logged):
    """One accepted chat message. ``ts`` is the id's millisecond part."""

    id: str
    room: str
    user: str
    text: str
    client_id: str | None = None
    edited_ts: int = 0  # when its text was last edited (ms since the epoch); 0: never
    key: IdKey = field(init=False, compare=False, repr=False)

    def frame(self, replay: bool = False) -> bytes:
        """The ``message`` frame (docs/protocol.md); callers encode once per message."""
        return frames.message(self.id, self.room, self.user, self.text, self.ts, replay, self.edited_ts)


CHANGE_KINDS = ("edit", "delete")


@dataclass(frozen=True, slots=True)
class Change(_Logged):
    """An edit or a deletion of an earlier message: an entry of the room's log in its own right.

    It takes an id in the room's order like a message, so every member gets
    it in the same place among the messages, and a resume from before it
    gets it again. ``target`` is the id of the message it changes; ``user``
    is who made the change.
    """

    id: str
    room: str
    user: str
    kind: str  # "edit" or "delete"
    target: str
    text: str = ""  # the new text of an edit
    key: IdKey = field(init=False, compare=False, repr=False)

    def frame(self, replay: bool = False) -> bytes:
        if self.kind == "edit":
            return frames.edited(self.target, self.text, self.ts)
        return frames.deleted(self.target)


Entry = Message | Change  # what a room's log holds, in one order


@dataclass(slots=True, unsafe_hash=True)
class Draft:
    """A message the bus has not stored yet."""

    room: str
    user: str
    text: str
    client_id: str | None = None
    # Charged to the user's shared message budget in the room; the host
    # application's API publishes under its own per-key limit instead.
    charged: bool = True

    def stored_as(self, message_id: str) -> Message:
        return Message(message_id, self.room, self.user, self.text, self.client_id)


@dataclass(slots=True, unsafe_hash=True)
class Published:
    """What publish returns: the stored message, and whether it was a resend of one."""

    message: Message
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """Retained messages after a position, oldest first.

    ``last_id`` is the newest id in the room at the time of the read (None for a
    room with nothing retained); ``complete`` is true only when nothing after the
    requested position can be missing (see ``completeness``).
    """

    messages: list[Entry]  # messages as they are now; on a resume also changes to what the reader has
    last_id: str | None
    complete: bool


@dataclass(frozen=True, slots=True)
class Older:
    """Retained messages just before a position, oldest first; ``complete`` when none older is retained."""

    messages: list[Message]
    complete: bool


@dataclass(frozen=True, slots=True)
class ChangeDraft:
    """An edit (``text`` given) or a deletion the bus has not stored yet.

    ``author``: the change is refused unless the target's author is this user
    (None: anyone's message, for the host application). ``window``: seconds
    after the message within which an edit is allowed (None: any time).
    """

    room: str
    user: str
    kind: str
    target: str
    text: str = ""
    author: str | None = None
    window: float | None = None


def completeness(since: IdKey | None, *, born: IdKey | None, max_deleted: IdKey, retained: int, replayed: int) -> bool:
    """Whether a replay can vouch that nothing after ``since`` is missing.

    ``born`` is the first id the room's log ever held (its epoch): a ``since``
    older than that comes from a history that was lost (a Redis restarted
    empty, a restarted in-process bus), which ids alone cannot reveal.
    ``max_deleted`` is the newest id trimming removed. Without ``since`` the
    replay is complete when it holds the room's whole history.
    """
    if since is None:
        return max_deleted == (0, 0) and replayed == retained
    if born is None:
        # Nothing was ever stored here, yet the client saw an id: it was lost.
        return False
    return since >= born and since >= max_deleted


NOTICE_KINDS = ("join", "leave", "typing")


@dataclass(frozen=True, slots=True)
class Notice:
    """An ephemeral room event (presence, join, leave, typing): not stored, not replayed, not ordered with messages.

    ``kind`` is ``join``, ``leave`` or ``typing`` (about ``user``; that user's
    own connections do not get it), or ``presence``: the whole member list,
    ``members`` as (user, connections) sorted by user, for everyone.
    """

    room: str
    kind: str
    user: str = ""
    members: tuple[tuple[str, int], ...] = ()

    @classmethod
    def presence(cls, room: str, members: dict[str, int]) -> "Notice":
        return cls(room, "presence", members=tuple(sorted(members.items())))

    def frame(self) -> bytes:
        if self.kind == "presence":
            return frames.presence(self.members)
        return frames.notice(self.kind, self.user)
