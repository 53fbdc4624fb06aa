"""How far consumer groups are behind, sampled from Redis (``scripts/lag.lua``), for metrics.

One script call per room this process holds, pipelined per shard on its
command wire, reports every group on the room's stream: where each stands is
where its process last marked it (``groups.mark_groups``, asked for before
each sample and by the status records), this process's own from what it has
delivered now. Two views come out of it:

- ``own``, per shard: this process's readers, entries stored and not yet
  delivered here (summed over its rooms), the age of the oldest of them, and
  the pending list (reads are NOACK: it stays empty unless something is wrong);
- ``nodes``, per node id: every process's groups on the rooms held here, as
  last marked in Redis. A process that stops (SIGSTOP, a stuck loop) stops
  marking, so the others see its lag grow while it cannot report its own.
  A healthy process's position is as old as its last mark: the others may
  see it up to one interval behind.

Entries behind are counted up to ``LAG_CAP`` per room (the count is a read
of those entries inside Redis); the age keeps growing past it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from redis.commands.core import AsyncScript

from bus.backend import BusUnavailable
from bus.redis.client import REDIS_ERRORS, Shard
from bus.redis.groups import RoomGroup

LAG_CAP = 1000  # entries counted per room and group


@dataclass(slots=True)
class Lag:
    """Entries behind, the age of the oldest (s), pending entries and the oldest pending's idle time (s)."""

    entries: int = 0
    seconds: float = 0.0
    pending: int = 0
    pending_seconds: float = 0.0

    def add(self, entries: int, seconds: float, pending: int, pending_seconds: float) -> None:
        self.entries += entries
        self.seconds = max(self.seconds, seconds)
        self.pending += pending
        self.pending_seconds = max(self.pending_seconds, pending_seconds)


@dataclass
class LagReport:
    own: dict[str, Lag] = field(default_factory=dict)  # shard address -> this process's readers
    nodes: dict[str, Lag] = field(default_factory=dict)  # node id -> its groups on the rooms held here


def node_of(group: str) -> str:
    """The node id of a group named after an incarnation, ``<node id>/<token>``."""
    return group.rpartition("/")[0] or group


async def sample_lag(
    rooms: Mapping[Shard, Sequence[RoomGroup]], script: AsyncScript, incarnation: str, timeout: float | None
) -> LagReport:
    """One sample over every shard; a shard that fails or times out is left out of this one."""
    report = LagReport()
    samples = await asyncio.gather(
        *(_sample_shard(shard, groups, script, incarnation, timeout) for shard, groups in rooms.items())
    )
    for shard, replies in zip(rooms, samples):
        if replies is None:
            continue
        own = report.own[shard.address] = Lag()
        for reply in replies:
            _take(reply, incarnation, own, report.nodes)
    return report


async def _sample_shard(
    shard: Shard, groups: Sequence[RoomGroup], script: AsyncScript, incarnation: str, timeout: float | None
) -> list[Any] | None:
    calls = [([group.key], [incarnation, group.cursor, LAG_CAP]) for group in groups]
    if not calls:
        return []
    with contextlib.suppress(*REDIS_ERRORS, BusUnavailable):
        return await asyncio.wait_for(shard.scripts(script, calls), timeout)
    return None


def _take(reply: Sequence[Any], incarnation: str, own: Lag, nodes: dict[str, Lag]) -> None:
    """One room's reply: ``[now_ms, (name, behind, behind_ms, pending, pending_idle_ms)...]``."""
    for k in range(1, len(reply) - 4, 5):
        name, behind, behind_ms, pending, idle_ms = reply[k : k + 5]
        name = name.decode() if isinstance(name, bytes) else str(name)
        figures = (int(behind), int(behind_ms) / 1000, int(pending), int(idle_ms) / 1000)
        if name == incarnation:
            own.add(*figures)
        nodes.setdefault(node_of(name), Lag()).add(*figures)
