"""The counters behind the traffic report (ops/report_model.py): per room, per user, per minute, per line.

Each holds what one room (or the whole log) needs in memory bounded by the
real users and the time span, never by the number of lines; see
ops/report.py for what grows and why.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ROOM_EVENTS = frozenset({"ws.connect", "ws.disconnect", "message.accepted", "message.rejected"})
# Events of a whole process that the timeline marks: restarts and bus outages.
NODE_MARKS = {
    "server.started": "started",
    "server.stopped": "stopped",
    "bus.error": "lost its bus",
    "bus.recovered": "bus back",
}
CRASHED = "crashed; started again"  # a start with no stop since the process's previous start
SECONDS_KEPT = 3600  # a timeline per second while the log spans no more seconds with traffic than this


class DurationMedian:
    """The median of many durations (ms) in bounded memory.

    Exact while a room has at most EXACT_LIMIT values (8 bytes each). Past
    that, every value goes to bucket ``ceil(log_GAMMA(v))``; a bucket's
    representative ``2 * GAMMA**i / (GAMMA + 1)`` is within 1 % of every value
    in it, so the reported median is within 1 % of a true middle value.
    Values under 1 ms share one bucket reported as 0. Deterministic, unlike a
    reservoir sample, so two runs on one log print the same report.
    """

    EXACT_LIMIT = 4096
    GAMMA = 1.02

    def __init__(self) -> None:
        self._exact: array[float] | None = array("d")
        self._buckets: Counter[int] = Counter()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def add(self, value: float) -> None:
        self._count += 1
        if self._exact is None:
            self._bucket(value)
            return
        self._exact.append(value)
        if len(self._exact) > self.EXACT_LIMIT:
            for kept in self._exact:
                self._bucket(kept)
            self._exact = None

    def _bucket(self, value: float) -> None:
        index = math.ceil(math.log(value, self.GAMMA)) if value >= 1 else -1
        self._buckets[index] += 1

    def median(self) -> float | None:
        if self._count == 0:
            return None
        if self._exact is not None:
            return float(statistics.median(self._exact))
        return self._bucket_median()

    def _bucket_median(self) -> float:
        rank = (self._count - 1) // 2  # the lower middle value, 0-based
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen > rank:
                break
        if index < 0:
            return 0.0
        return 2 * self.GAMMA**index / (self.GAMMA + 1)


@dataclass(slots=True)  # one per user per room: slots halve what a busy log holds
class UserCounts:
    messages: int = 0
    rejected: int = 0
    connections: int = 0


@dataclass
class MinuteCounts:
    """What happened in one minute, over the rooms the report covers."""

    messages: int = 0
    joins: int = 0  # connections opened (ws.connect)
    leaves: int = 0  # connections closed (ws.disconnect)
    rejected: int = 0
    marks: Counter[str] = field(default_factory=Counter)  # "node-a started" -> times

    def as_dict(self, minute: str) -> dict[str, Any]:
        return {
            "minute": minute + "Z",
            "messages": self.messages,
            "joins": self.joins,
            "leaves": self.leaves,
            "rejected": self.rejected,
            "events": mark_texts(self.marks),
        }


def mark_texts(marks: Counter[str]) -> list[str]:
    return [mark if times == 1 else f"{mark} ×{times}" for mark, times in marks.items()]


@dataclass
class RoomStats:
    accepted: int = 0
    resends: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    users: dict[str, UserCounts] = field(default_factory=dict)
    connections: int = 0
    disconnections: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    durations: DurationMedian = field(default_factory=DurationMedian)
    per_minute: Counter[str] = field(default_factory=Counter)
    served_by: dict[str, Counter[str]] = field(default_factory=dict)  # user -> process -> connections

    def busiest_minute(self) -> dict[str, Any] | None:
        if not self.per_minute:
            return None
        # The earliest of equally busy minutes, so the report is deterministic.
        minute, messages = min(self.per_minute.items(), key=lambda item: (-item[1], item[0]))
        return {"minute": minute + "Z", "messages": messages}

    def as_dict(self) -> dict[str, Any]:
        median = self.durations.median()
        return {
            "accepted": self.accepted,
            "resends": self.resends,
            "rejected": dict(sorted(self.rejected.items())),
            "users": len(self.users),
            "connections": self.connections,
            "disconnections": self.disconnections,
            # Half up, not Python's round-half-even: 104.5 ms reads as 105.
            "median_connection_ms": None if median is None else math.floor(median + 0.5),
            "median_exact": self.durations.exact,
            "close_codes": dict(sorted(self.close_codes.items())),
            "busiest_minute": self.busiest_minute(),
            "per_user": self.per_user(),
        }

    def per_user(self) -> dict[str, UserCounts]:
        """Each user's counts, the most active first (then by name, so the order is stable).

        The counts objects themselves, not copies: orjson writes them as
        ``{"messages": ..., "rejected": ..., "connections": ...}`` without a
        dict per user (a busy log has tens of thousands of them).
        """
        ranked = sorted(self.users.items(), key=lambda item: (-item[1].messages, -item[1].connections, item[0]))
        return dict(ranked)


@dataclass
class LineCounts:
    read: int = 0
    room_events: int = 0
    not_json: int = 0
    not_room_events: int = 0
    filtered_out: int = 0
    bad_timestamp: int = 0  # JSON whose timestamp is no time (``2026-13-45T...``): skipped, not placed anywhere


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; no offset means UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc_stamp(timestamp: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``, which sorts as time does; None when not a timestamp.

    The server's own stamps are already in that form and pass through unparsed.
    """
    if not isinstance(timestamp, str):
        return None
    try:
        if len(timestamp) == 27 and timestamp.endswith("Z") and timestamp[10] == "T":
            datetime.fromisoformat(timestamp[:-1])  # the form is right; a date like 2026-13-45 is not
            return timestamp
        return parse_time(timestamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None


def minute_of(timestamp: str) -> str | None:
    """``YYYY-MM-DDTHH:MM`` in UTC; slicing suffices for the server's own ``...Z`` stamps."""
    if timestamp.endswith("Z") and len(timestamp) >= 17 and timestamp[10] == "T":
        return timestamp[:16]
    try:
        return parse_time(timestamp).strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        return None
