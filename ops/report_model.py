"""The traffic report's model: log lines in, per-room figures out (``TrafficReport``).

Parsing and bucketing only; ops/report_text.py and ops/report_html.py render
what ``as_dict`` returns, and ops/report.py is the command line.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Iterable

import orjson

from ops.report_counts import (
    CRASHED,
    NODE_MARKS,
    ROOM_EVENTS,
    SECONDS_KEPT,
    LineCounts,
    MinuteCounts,
    RoomStats,
    UserCounts,
    mark_texts,
    parse_time,
    utc_stamp,
)


class TrafficReport:
    """Feed log lines one at a time; read the per-room figures at any point."""

    def __init__(self, room: str | None = None, since: datetime | None = None, until: datetime | None = None) -> None:
        self.room = room
        self.since = since
        self.until = until
        self.rooms: dict[str, RoomStats] = {}
        self.lines = LineCounts()
        self.timeline: dict[str, MinuteCounts] = {}  # "YYYY-MM-DDTHH:MM" (UTC) -> counts
        # The same per second, for a short log's chart; None once the log spans too many seconds.
        self.seconds: dict[str, MinuteCounts] | None = {}
        self.lifecycle: dict[str, list[tuple[str, str]]] = {}  # process -> (time, started/stopped), for crashes
        self.first: str | None = None  # earliest and latest timestamp read (UTC, ISO 8601)
        self.last: str | None = None

    def feed_all(self, lines: Iterable[bytes | str]) -> "TrafficReport":
        for line in lines:
            self.feed(line)
        return self

    def feed(self, line: bytes | str) -> None:
        self.lines.read += 1
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.lines.not_json += 1
            return
        if isinstance(event, dict) and "timestamp" in event and utc_stamp(event["timestamp"]) is None:
            self.lines.bad_timestamp += 1
            return
        if not _is_room_event(event):
            self.lines.not_room_events += 1
            if isinstance(event, dict) and self._in_time_window(event):
                self._note_time(event)
                self._mark(event)
            return
        if not self._in_window(event):
            self.lines.filtered_out += 1
            if self._in_time_window(event):
                self._note_time(event)
            return
        self.lines.room_events += 1
        self._note_time(event)
        self._count(event)

    def _note_time(self, event: dict[str, Any]) -> None:
        """Widen the span the report covers (every line in the time window counts)."""
        stamp = utc_stamp(event.get("timestamp"))
        if stamp is None:
            return
        if self.first is None or stamp < self.first:
            self.first = stamp
        if self.last is None or stamp > self.last:
            self.last = stamp

    def _mark(self, event: dict[str, Any]) -> None:
        mark = NODE_MARKS.get(str(event.get("event")))
        stamp = utc_stamp(event.get("timestamp"))
        if mark is None or stamp is None:
            return
        node = str(event.get("node", "?"))
        for counts in self._slots(stamp):
            counts.marks[f"{node} {mark}"] += 1
        if mark in ("started", "stopped"):
            self.lifecycle.setdefault(node, []).append((stamp, mark))

    def _minute(self, minute: str) -> MinuteCounts:
        counts = self.timeline.get(minute)
        if counts is None:
            counts = self.timeline[minute] = MinuteCounts()
        return counts

    def _slots(self, stamp: str | None) -> list[MinuteCounts]:
        """The counts of the minute and (while kept) of the second ``stamp`` falls in."""
        if stamp is None:
            return []
        slots = [self._minute(stamp[:16])]
        if self.seconds is not None:
            second = self.seconds.get(stamp[:19])
            if second is None:
                if len(self.seconds) >= SECONDS_KEPT:
                    self.seconds = None  # a long log: its chart is drawn per minute
                    return slots
                second = self.seconds[stamp[:19]] = MinuteCounts()
            slots.append(second)
        return slots

    def crashes(self) -> set[tuple[str, str]]:
        """(process, time) of every start that came with no stop since that process's previous start."""
        found = set()
        for node, events in self.lifecycle.items():
            previous = None
            for stamp, kind in sorted(events):
                if kind == "started" and previous == "started":
                    found.add((node, stamp))
                previous = kind
        return found

    def _with_crashes(self, timeline: dict[str, MinuteCounts], width: int) -> dict[str, list[str]]:
        """Each slot's event texts, a start after a crash told as such."""
        marks = {key: Counter(counts.marks) for key, counts in timeline.items()}
        for node, stamp in self.crashes():
            slot = marks.get(stamp[:width])
            if slot is not None and slot[f"{node} started"] > 0:
                slot[f"{node} started"] -= 1
                slot[f"{node} {CRASHED}"] += 1
        return {key: mark_texts(+counter) for key, counter in marks.items()}

    def _in_window(self, event: dict[str, Any]) -> bool:
        if self.room is not None and event["room"] != self.room:
            return False
        return self._in_time_window(event)

    def _in_time_window(self, event: dict[str, Any]) -> bool:
        if self.since is None and self.until is None:
            return True
        try:
            moment = parse_time(str(event.get("timestamp")))
        except ValueError:
            return False  # a line that cannot be placed in time is not in the window
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    def _count(self, event: dict[str, Any]) -> None:
        stats = self.rooms.get(event["room"])
        if stats is None:
            stats = self.rooms[event["room"]] = RoomStats()
        user = event.get("user")
        counts = UserCounts()  # counts of a line without a user go nowhere
        if isinstance(user, str):
            counts = stats.users.setdefault(user, counts)
        stamp = utc_stamp(event.get("timestamp"))
        minute = stamp[:16] if stamp is not None else None
        slots = self._slots(stamp)
        kind = event["event"]
        if kind == "message.accepted":
            if _accepted(stats, event, minute):
                counts.messages += 1
                for now in slots:
                    now.messages += 1
        elif kind == "message.rejected":
            stats.rejected[str(event.get("reason"))] += 1
            counts.rejected += 1
            for now in slots:
                now.rejected += 1
        elif kind == "ws.connect":
            stats.connections += 1
            counts.connections += 1
            if isinstance(user, str):
                stats.served_by.setdefault(user, Counter())[str(event.get("node", "?"))] += 1
            for now in slots:
                now.joins += 1
        else:
            _disconnected(stats, event)
            for now in slots:
                now.leaves += 1

    def _room_dict(self, name: str) -> dict[str, Any]:
        room = self.rooms[name].as_dict()
        if self.room is not None:  # one room's view: which process served each user's connections
            served = self.rooms[name].served_by
            room["processes"] = {
                user: dict(sorted(served[user].items())) for user in room["per_user"] if user in served
            }
        return room

    def span(self) -> dict[str, Any]:
        """The first and last timestamp read, and the seconds between them."""
        if self.first is None or self.last is None:
            return {"from": None, "to": None, "seconds": 0}
        seconds = (parse_time(self.last[:-1]) - parse_time(self.first[:-1])).total_seconds()
        return {"from": self.first, "to": self.last, "seconds": round(seconds, 3)}

    def by_minute(self) -> list[dict[str, Any]]:
        """The timeline, oldest minute first; minutes with nothing in them are left out."""
        events = self._with_crashes(self.timeline, 16)
        return [{**self.timeline[m].as_dict(m), "events": events[m]} for m in sorted(self.timeline)]

    def by_second(self) -> list[dict[str, Any]] | None:
        """The timeline per second (``minute`` holds the second), or None for a log spanning too long."""
        if self.seconds is None:
            return None
        events = self._with_crashes(self.seconds, 19)
        return [{**self.seconds[s].as_dict(s), "events": events[s]} for s in sorted(self.seconds)]

    def as_dict(self, by_minute: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "span": self.span(),
            "rooms": {name: self._room_dict(name) for name in sorted(self.rooms)},
            "lines": vars(self.lines).copy(),
            "filters": {
                "room": self.room,
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
            },
        }
        if by_minute:
            result["by_minute"] = self.by_minute()
        return result


def _is_room_event(event: Any) -> bool:
    return isinstance(event, dict) and event.get("event") in ROOM_EVENTS and isinstance(event.get("room"), str)


def _accepted(stats: RoomStats, event: dict[str, Any], minute: str | None) -> bool:
    """Count an accepted message; False for a resend (stored once, counted apart)."""
    if event.get("resend"):
        stats.resends += 1
        return False
    stats.accepted += 1
    if minute is not None:
        stats.per_minute[minute] += 1
    return True


def _disconnected(stats: RoomStats, event: dict[str, Any]) -> None:
    stats.disconnections += 1
    code = event.get("code")
    stats.close_codes["none" if code is None else str(code)] += 1
    duration = event.get("duration_ms")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration >= 0:
        stats.durations.add(float(duration))
