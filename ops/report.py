"""The traffic report (README, "The traffic report"): ``python server.py report``.

    python server.py report [--room R] [--since T] [--until T] [--by-minute]
                            [--format table|json|html] [FILE ...]

Reads the server's JSON log lines (stdin when no file is named, ``-`` for stdin
among files, ``.gz`` files decompressed on the fly) and prints the time span
the log covers and, per room: messages accepted (resends of an already
accepted ``client_id`` apart), rejections by reason, distinct users,
connections, the median connection duration, close codes, the busiest minute
and each user's counts. ``--by-minute`` adds a timeline (messages, joins,
leaves, rejections per minute, with the processes' starts, stops and bus
outages marked); ``--format html`` draws the same as one self-contained page
(ops/report_html.py). Lines that are not JSON, JSON but not a room event, or
JSON whose timestamp is not a time, are counted and skipped; the counts are in
the report.

What is counted where: ``connections`` counts ``ws.connect`` lines; durations
and close codes come from ``ws.disconnect`` lines. With ``--since``/``--until``
(ISO 8601; ``since`` inclusive, ``until`` exclusive, UTC when no offset is
given) a connection opened before the window but closed inside it adds its
duration and close code, not a connection.

Memory is bounded whatever the number of lines; the input is streamed line by
line. What grows is:

- distinct users: a set of names per room, bounded by the real users;
- connection durations: exact for up to ``DurationMedian.EXACT_LIMIT`` values
  per room, then a log-bucketed histogram (the DDSketch idea) whose median is
  within 1 % of the true one, at most ~1,400 buckets per room;
- busiest minute and the timeline: a count per room per minute that had
  accepted messages, and one set of counts per minute with any traffic, so
  bounded by the time span the log covers (a month of round-the-clock
  traffic is 43,200 entries, a few MB). Keeping only the current minute
  would need a time-ordered input, which several files merged are not;
- per-user counts: three numbers per user per room, bounded by the real users.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import statistics
import sys
import unicodedata
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Iterable, Iterator, Sequence

import orjson

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


# ---- rendering -------------------------------------------------------------


def render_json(report: TrafficReport, by_minute: bool = False) -> str:
    return orjson.dumps(report.as_dict(by_minute), option=orjson.OPT_INDENT_2).decode()


def display_width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text
    )


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - display_width(text))
    return gap + text if right else text + gap


def _table(rows: list[list[str]], numeric: bool = True, text_columns: int = 1) -> list[str]:
    """Columns sized to their content; the first ``text_columns`` left-aligned, the rest right when ``numeric``."""
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(_pad(cell, widths[i], numeric and i >= text_columns) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in counter.items()) or "-"


def bad_timestamps_text(lines: dict[str, int]) -> str:
    """``, N with a bad timestamp`` when any line was skipped for one, else nothing."""
    return f", {lines['bad_timestamp']} with a bad timestamp" if lines.get("bad_timestamp") else ""


def span_text(span: dict[str, Any]) -> str:
    if span["from"] is None:
        return "span: no timestamps"
    return f"span: {span['from']} to {span['to']} ({duration_text(span['seconds'])})"


def duration_text(seconds: float) -> str:
    """1.2 s, 5 min 3 s, 2 h 5 min, 3 d 4 h: two units at most."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{seconds:.0f} s"  # not reached


def render_table(report: TrafficReport, by_minute: bool = False) -> str:
    data = report.as_dict(by_minute)
    rooms: dict[str, dict[str, Any]] = data["rooms"]
    lines = data["lines"]
    out = [
        f"rooms: {len(rooms)}; lines read: {lines['read']} ({lines['room_events']} room events, "
        f"{lines['not_room_events']} other events, {lines['not_json']} not JSON, "
        f"{lines['filtered_out']} outside the filters{bad_timestamps_text(lines)})",
        span_text(data["span"]),
        "",
    ]
    if not rooms:
        return "\n".join(out + ["no room traffic"]) + "\n"
    header = ["room", "accepted", "resends", "rejected", "users", "connections", "median conn", "busiest minute"]
    out += _table([header] + [_room_row(name, room) for name, room in rooms.items()])
    out += ["", "rejected by reason:"]
    out += _table([[f"  {name}", _counts(room["rejected"])] for name, room in rooms.items()], numeric=False)
    out += ["", "close codes:"]
    out += _table([[f"  {name}", _counts(room["close_codes"])] for name, room in rooms.items()], numeric=False)
    out += ["", "by user (most messages first):"] + _user_rows(rooms)
    if by_minute:
        out += ["", "by minute (UTC; joins and leaves are connections opened and closed):"]
        out += minute_rows(data["by_minute"])
    return "\n".join(out) + "\n"


USERS_SHOWN = 10  # per room in the table; --format json has them all


def _user_rows(rooms: dict[str, dict[str, Any]]) -> list[str]:
    one_room = any("processes" in room for room in rooms.values())  # --room: who served whom
    rows = [["  room", "user", "messages", "rejected", "connections"] + (["processes"] if one_room else [])]
    more: dict[int, int] = {}
    for name, room in rooms.items():
        users = list(room["per_user"].items())
        for user, counts in users[:USERS_SHOWN]:
            row = [f"  {name}", user, str(counts.messages), str(counts.rejected), str(counts.connections)]
            if one_room:
                row.append(processes_text(room["processes"].get(user, {})))
            rows.append(row)
        if len(users) > USERS_SHOWN:
            more[len(rows)] = len(users) - USERS_SHOWN
    table = _table(rows, text_columns=2)
    for offset, (at, hidden) in enumerate(sorted(more.items())):
        table.insert(at + offset, f"    ... and {hidden} more")
    return table


def processes_text(served: dict[str, int]) -> str:
    """``node-a 2, node-b 1``: the processes that served a user's connections, and how many each."""
    return ", ".join(f"{node} {count}" for node, count in served.items()) or "-"


def minute_rows(minutes: list[dict[str, Any]]) -> list[str]:
    """One row per minute with traffic or events; a line says how long each quiet gap was."""
    rows = [["minute", "messages", "joins", "leaves", "rejected", "events"]]
    gaps: dict[int, int] = {}
    previous: datetime | None = None
    for entry in minutes:
        moment = parse_time(entry["minute"][:-1])
        if previous is not None and (moment - previous).total_seconds() > 60:
            gaps[len(rows)] = int((moment - previous).total_seconds() // 60) - 1
        previous = moment
        rows.append(
            [
                entry["minute"][:-1].replace("T", " "),
                str(entry["messages"]),
                str(entry["joins"]),
                str(entry["leaves"]),
                str(entry["rejected"]),
                "; ".join(entry["events"]),
            ]
        )
    table = [line for line in _table([row[:-1] for row in rows])]
    table = [f"{line}  {row[-1]}".rstrip() for line, row in zip(table, rows)]
    for offset, (at, quiet) in enumerate(sorted(gaps.items())):
        table.insert(at + offset, f"  ... {quiet} quiet minute{'s' if quiet != 1 else ''}")
    return table


def _room_row(name: str, room: dict[str, Any]) -> list[str]:
    median = room["median_connection_ms"]
    busiest = room["busiest_minute"]
    return [
        name,
        str(room["accepted"]),
        str(room["resends"]),
        str(sum(room["rejected"].values())),
        str(room["users"]),
        str(room["connections"]),
        "-" if median is None else f"{'' if room['median_exact'] else '~'}{median} ms",
        "-" if busiest is None else f"{busiest['minute']} ({busiest['messages']})",
    ]


# ---- command line ----------------------------------------------------------


def render(report: TrafficReport, form: str, by_minute: bool) -> bytes:
    """The report as bytes for stdout. JSON goes straight from orjson: with tens of
    thousands of users, a str copy and its encoding would double the peak memory."""
    if form == "json":
        return orjson.dumps(report.as_dict(by_minute), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if form == "html":
        from ops.report_html import render_html

        return render_html(report).encode("utf-8")
    return render_table(report, by_minute).encode("utf-8")


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py report",
        description="Per-room traffic report of the server's JSON logs: the time span, per room and "
        "per user counts, and with --by-minute a timeline with restarts and outages marked.",
        epilog="Example: server.py report --room lobby --by-minute --since 2026-11-24T09:00 /var/log/chat/*.log",
    )
    parser.add_argument("--room", help="only this room")
    parser.add_argument("--since", type=_time_arg, help="from this ISO 8601 time (inclusive; UTC without an offset)")
    parser.add_argument("--until", type=_time_arg, help="up to this ISO 8601 time (exclusive)")
    parser.add_argument(
        "--by-minute",
        action="store_true",
        help="add the timeline: messages, joins, leaves, rejections per minute, with "
        "processes started or stopped and bus outages marked",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json", "html"),
        default="table",
        help="table (default), json, or html: one self-contained page with charts",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="log files; stdin when none, or '-'")
    return parser


def _open(name: str) -> IO[bytes] | gzip.GzipFile:
    if name == "-":
        return sys.stdin.buffer
    if name.endswith(".gz"):
        return gzip.open(name, "rb")
    return open(name, "rb")


def read_lines(names: Sequence[str]) -> Iterator[bytes]:
    """Every line of every named file in turn (stdin when none), one at a time."""
    for name in names or ["-"]:
        handle = _open(name)
        try:
            yield from handle
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    report = TrafficReport(args.room, args.since, args.until)
    try:
        report.feed_all(read_lines(args.files))
    except OSError as exc:
        print(f"server.py report: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.buffer.write(render(report, args.format, args.by_minute))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error; keep Python from reporting it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
