"""What presence and the consumer share: the Redis client, key names, scripts, who this process is, one lock a room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bus.keyed_locks import KeyedLocks
from bus.redis.client import Redis
from bus.redis.keys import Keys
from bus.redis.scripts import Scripts


@dataclass(frozen=True)
class RoomParts:
    redis: Redis
    keys: Keys
    scripts: Scripts
    incarnation: Callable[[], str]
    locks: KeyedLocks  # one room's presence listing and subscription change under one lock


class UsesRoomParts:
    """Base of ``Presence`` and ``Consumer``: the shared parts, as the attributes both read."""

    def __init__(self, parts: RoomParts) -> None:
        self._redis = parts.redis
        self._keys = parts.keys
        self._scripts = parts.scripts
        self._incarnation = parts.incarnation
        self._locks = parts.locks
