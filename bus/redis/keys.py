"""Every Redis key and channel name of the bus, under one prefix (``--redis-prefix``).

Keys of one room share the hash tag ``{<room>}``: they live in one Redis
Cluster slot, so one script may touch them all, and an operator finds them
with ``SCAN MATCH *<room>*`` (room names are word characters: no braces).

- ``P:{<room>}``: the room's stream; entry id = message id; fields ``user``,
  ``text`` and, when the sender gave one, ``cid``. An edit or deletion is an
  entry too (bus/changes.py): ``user``, ``text``, ``op`` (edit or delete) and
  ``of`` (the message's id).
- ``P:{<room>}:born``: the first id the stream held in this Redis (the room's
  epoch); lost with the stream when a Redis restarts empty.
- ``P:{<room>}:trimmed``: the newest id retention trimming removed.
- ``P:{<room>}:bytes``: the UTF-8 bytes of the texts the stream holds (``--history-bytes``).
- ``P:{<room>}:cid:<user>:<client_id>``: the id a resendable message got, for
  the resend window. ``:`` and ``%`` in the user are percent-encoded.
- ``P:{<room>}:rate:name:<name>`` (a cookie's user) or ``P:{<room>}:rate:sub:<sub>``
  (a token's): hash ``tokens``, ``at`` (ms, Redis clock), the user's message
  budget in the room over every process; gone once it would be full again.
- ``P:{<room>}:users``: hash, user -> connections over every process.
- ``P:{<room>}:members:<incarnation>``: hash, that incarnation's share of it.
- ``P:{<room>}:typing:<user>``: present for a second after a typing notice.
- ``P:{<room>}:events``: the room's *shard* channel (SPUBLISH, Redis 7), on the
  room's slot: each message stored, as a JSON array ``[id, user, text,
  client_id or false]``, a change as ``[id, user, text, false, op, of]``
  (a doorbell that carries the entry: the consumer
  delivers it, or reads the stream when it is catching up),
  ``join:<user>``, ``leave:<user>``, ``typing:<user>``.

Process bookkeeping lives under the tag ``{@nodes}`` (``@`` is not a word
character, so no room has that name). A process is known by its
*incarnation*, ``<node id>/<token>``, new at each start:

- ``P:{@nodes}:alive``: sorted set, incarnation -> last heartbeat (ms, Redis clock).
- ``P:{@nodes}:rooms:<incarnation>``: rooms where it has a consumer group or
  presence counts, for the janitor that cleans up after a dead one.
- ``P:{@nodes}:status:<incarnation>``: its status record (JSON: address,
  readiness, rooms, connections, deliveries), written every few seconds with
  a TTL, read by ``server.py status`` and the admin page (bus/redis/status.py).

Moderation (bus/redis/moderation.py) lives under the tag ``{@moderation}``:

- ``P:{@moderation}:sanctions``: sorted set of the bans and mutes in force,
  member ``[kind, room or "", user]`` (JSON), score their end (ms; ``inf``:
  until lifted); the key expires with its longest sanction.
- ``P:{@moderation}:events``: stream (capped) of changes and disconnects,
  which every process reads.
"""

from __future__ import annotations

import re
from typing import Callable

from bus.user_key import user_parts

PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _in_room(tail: str) -> Callable[[Keys, str], str]:
    """The method that names one of a room's keys: ``P:{<room>}`` then ``tail``."""

    def key(self: Keys, room: str) -> str:
        return f"{self.prefix}:{{{room}}}{tail}"

    return key


def _of_process(kind: str) -> Callable[[Keys, str], str]:
    """The method that names one of a process's keys: ``P:{@nodes}:<kind>:<incarnation>``."""

    def key(self: Keys, incarnation: str) -> str:
        return f"{self.prefix}:{{@nodes}}:{kind}:{incarnation}"

    return key


class Keys:
    stream = _in_room("")
    born = _in_room(":born")
    trimmed = _in_room(":trimmed")
    size = _in_room(":bytes")
    users = _in_room(":users")
    rooms_of = _of_process("rooms")
    status = _of_process("status")
    control = _of_process("control")  # a plain channel a process always listens on, so a read has something to wait on

    def __init__(self, prefix: str = "chat") -> None:
        if not PREFIX_PATTERN.fullmatch(prefix):
            raise ValueError(f"a Redis prefix is 1 to 64 of A-Z a-z 0-9 _ . -, not {prefix!r}")
        self.prefix = prefix
        self.alive = f"{prefix}:{{@nodes}}:alive"
        self.sanctions = f"{prefix}:{{@moderation}}:sanctions"
        self.moderation_events = f"{prefix}:{{@moderation}}:events"
        self._channel_head, self._channel_tail = f"{prefix}:{{", "}:events"

    def resend(self, room: str, user: str, client_id: str) -> str:
        safe_user = user.replace("%", "%25").replace(":", "%3A")
        return f"{self.prefix}:{{{room}}}:cid:{safe_user}:{client_id}"

    def rate(self, room: str, user: str) -> str:
        """The user's message budget in the room: a token's user by its ``sub`` alone, whatever name it shows."""
        name, user_id = user_parts(user)
        owner = f"name:{name}" if user_id is None else f"sub:{user_id}"
        return f"{self.prefix}:{{{room}}}:rate:{owner}"

    def members(self, room: str, incarnation: str) -> str:
        return f"{self.prefix}:{{{room}}}:members:{incarnation}"

    def typing(self, room: str, user: str) -> str:
        return f"{self.prefix}:{{{room}}}:typing:{user}"

    def channel(self, room: str) -> str:
        return f"{self._channel_head}{room}{self._channel_tail}"

    def room_of_channel(self, channel: str) -> str | None:
        head, tail = self._channel_head, self._channel_tail
        if channel.startswith(head) and channel.endswith(tail):
            return channel[len(head) : -len(tail)]
        return None
