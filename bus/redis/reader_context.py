"""What every shard reader of a process shares (``shard_reader.ShardReader``): who it is, where entries go."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from bus.backend import Deliver, Notify
from bus.redis.client import Redis, Shard
from bus.redis.groups import RoomGroup
from bus.redis.keys import Keys

Members = Callable[[str], Awaitable[list[tuple[str, int]]]]
Ensure = Callable[[Shard, list["RoomGroup"]], Awaitable[None]]


@dataclass
class ReaderContext:
    """What every ShardReader shares: who it is, where messages and notices go, how groups are made."""

    redis: Redis
    keys: Keys
    incarnation: Callable[[], str]
    ensure: Ensure
    members: Members
    deliver: Deliver | None = None
    notify: Notify | None = None
    timeout: float | None = None
    tokens: Any = field(default_factory=lambda: itertools.count(1))
