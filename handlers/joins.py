"""What a join may cost: handshakes and new rooms per client, and the pace of its history replay.

The budgets live in ``handlers.limits.JoinLimits``; this module holds the
replay's byte budget and the sampled log of refused handshakes.

A join costs the server far more than the ~200 bytes of its handshake: a
seat, presence notices to every member, a history read and its replay. So
joins are budgeted per client (the address, or the token's user), like
frames are:

- ``--join-rate``/``--join-burst``: handshakes per second. Past it the
  handshake gets 429 before anything else is done for it.
- ``--room-create-rate``: rooms that did not exist, per minute.
- ``--replay-rate``/``--replay-burst``: the bytes of history replayed to one
  client, over all its connections. A ``since`` far back into a room of long
  messages gets its first ``--replay-burst`` bytes at once, then the rest at
  the rate: ten connections from one address share one pace.

Refusals are meant to be cheap, since a flood is made of them: a dict look-up
and a token bucket, no log line each (``RefusalLog`` samples them).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Callable

import structlog

from bus.backend import BusUnavailable
from bus.room_bus import RoomBus
from handlers.rate_limit import TokenBucket

# The handshake refusal log: the first LOGGED_BURST lines, then one a second
# saying how many were left out since the last.
LOGGED_BURST = 10
LOGGED_PER_SECOND = 1.0
log = structlog.get_logger("chat.ws")


class ReplayBudgets:
    """Bytes of replay per key: a burst, then ``rate`` bytes a second; ``reserve`` says how long to wait.

    A reservation is taken at once, even past what is left (the bucket goes
    into debt), and the caller waits out the debt: connections of one key
    queue behind each other and together get no more than the rate.
    """

    def __init__(self, rate: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (bytes left, when)

    def __len__(self) -> int:
        return len(self._entries)

    def reserve(self, key: str, size: int) -> float:
        """Take ``size`` bytes of ``key``'s budget; the seconds to wait before sending them (0: now)."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        self._forget_full(now)
        left, stamp = self._entries.pop(key, (self._burst, now))
        left = min(self._burst, left + (now - stamp) * self._rate) - size
        self._entries[key] = (left, now)  # most recently used last
        return -left / self._rate if left < 0 else 0.0

    def _forget_full(self, now: float) -> None:
        """Drop the entries that have refilled to the burst: a new one starts there too."""
        while self._entries:
            left, stamp = next(iter(self._entries.values()))
            if left + (now - stamp) * self._rate < self._burst:
                return
            self._entries.popitem(last=False)


async def room_is_new(bus: RoomBus, room: str) -> bool:
    """Whether joining ``room`` would create it: nobody in it, here or on another process, and no history.

    A room with members on this process is known without asking the backend.
    An outage says no: the join then fails on its own, as unavailable.
    """
    if bus.has_members_here(room):
        return False
    try:
        history, members = await asyncio.gather(bus.history(room, None, 1), bus.members(room))
    except BusUnavailable:
        return False
    return history.last_id is None and not members


class RefusalLog:
    """The ``ws.refused`` lines: a burst, then one a second, each with how many were left out before it."""

    def __init__(self) -> None:
        self._budget = TokenBucket(LOGGED_PER_SECOND, LOGGED_BURST)
        self.suppressed = 0

    def refused(self, status: int, reason: str, client: str) -> None:
        if not self._budget.take():
            self.suppressed += 1
            return
        left_out, self.suppressed = self.suppressed, 0
        log.info("ws.refused", status=status, reason=reason, client=client, suppressed=left_out)


REFUSALS = RefusalLog()  # every refused handshake of the process


__all__ = ["REFUSALS", "RefusalLog", "ReplayBudgets", "room_is_new"]
