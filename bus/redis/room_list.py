"""Which rooms have members now, over every process (the server API's room listing).

Each process lists the rooms it has members or a consumer group in
(``P:{@nodes}:rooms:<incarnation>``); their union, read in name order,
gives the candidates, and each room's user totals say who is in it now.
A page reads only as many rooms' totals as it needs.
"""

from __future__ import annotations

from bus.redis.client import Redis
from bus.redis.keys import Keys


async def rooms_with_members(redis: Redis, keys: Keys, after: str, limit: int) -> list[tuple[str, int]]:
    """Up to ``limit`` rooms named after ``after`` that have members, with how many users each has."""
    incarnations = await redis.command(keys.alive, "ZRANGE", keys.alive, "0", "-1", what="room list")
    candidates: set[str] = set()
    for incarnation in incarnations:
        listing = keys.rooms_of(incarnation)
        candidates.update(await redis.command(listing, "SMEMBERS", listing, what="room list"))
    found: list[tuple[str, int]] = []
    for room in sorted(room for room in candidates if room > after):
        totals = keys.users(room)
        counts = await redis.command(totals, "HVALS", totals, what="room list")
        users = sum(1 for count in counts if int(count) > 0)
        if users:
            found.append((room, users))
            if len(found) == limit:
                break
    return found
