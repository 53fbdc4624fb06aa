"""The traffic report of contract section 6: ``python server.py report``.

    python server.py report [--room R] [--since T] [--until T] [--format table|json] [FILE ...]

Reads the server's JSON log lines (stdin when no file is named, ``-`` for stdin
among files, ``.gz`` files decompressed on the fly) and prints, per room:
messages accepted (resends of an already accepted ``client_id`` apart),
rejections by reason, distinct users, connections, the median connection
duration, close codes and the busiest minute. Lines that are not JSON, or JSON
but not a room event, are counted and skipped; the counts are in the report.

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
- busiest minute: a count per room per minute that had accepted messages,
  so bounded by the time span the log covers (a month of round-the-clock
  traffic in one room is 43,200 entries, a few MB). Keeping only the current
  minute would need a time-ordered input, which several files merged are not.
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


@dataclass
class RoomStats:
    accepted: int = 0
    resends: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    connections: int = 0
    disconnections: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    durations: DurationMedian = field(default_factory=DurationMedian)
    per_minute: Counter[str] = field(default_factory=Counter)

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
        }


@dataclass
class LineCounts:
    read: int = 0
    room_events: int = 0
    not_json: int = 0
    not_room_events: int = 0
    filtered_out: int = 0


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; no offset means UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


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

    def __init__(self, room: str | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> None:
        self.room = room
        self.since = since
        self.until = until
        self.rooms: dict[str, RoomStats] = {}
        self.lines = LineCounts()

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
        if not _is_room_event(event):
            self.lines.not_room_events += 1
            return
        if not self._in_window(event):
            self.lines.filtered_out += 1
            return
        self.lines.room_events += 1
        self._count(event)

    def _in_window(self, event: dict[str, Any]) -> bool:
        if self.room is not None and event["room"] != self.room:
            return False
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
        if isinstance(user, str):
            stats.users.add(user)
        kind = event["event"]
        if kind == "message.accepted":
            _accepted(stats, event)
        elif kind == "message.rejected":
            stats.rejected[str(event.get("reason"))] += 1
        elif kind == "ws.connect":
            stats.connections += 1
        else:
            _disconnected(stats, event)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rooms": {name: self.rooms[name].as_dict() for name in sorted(self.rooms)},
            "lines": vars(self.lines).copy(),
            "filters": {
                "room": self.room,
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
            },
        }


def _is_room_event(event: Any) -> bool:
    return (isinstance(event, dict) and event.get("event") in ROOM_EVENTS
            and isinstance(event.get("room"), str))


def _accepted(stats: RoomStats, event: dict[str, Any]) -> None:
    if event.get("resend"):
        stats.resends += 1
        return
    stats.accepted += 1
    minute = minute_of(str(event.get("timestamp", "")))
    if minute is not None:
        stats.per_minute[minute] += 1


def _disconnected(stats: RoomStats, event: dict[str, Any]) -> None:
    stats.disconnections += 1
    code = event.get("code")
    stats.close_codes["none" if code is None else str(code)] += 1
    duration = event.get("duration_ms")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration >= 0:
        stats.durations.add(float(duration))


# ---- rendering -------------------------------------------------------------

def render_json(report: TrafficReport) -> str:
    return orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode()


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


def _table(rows: list[list[str]], numeric: bool = True) -> list[str]:
    """Columns sized to their content; the first left-aligned, the rest right when ``numeric``."""
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(_pad(cell, widths[i], numeric and i > 0) for i, cell in enumerate(row)).rstrip()
            for row in rows]


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in counter.items()) or "-"


def render_table(report: TrafficReport) -> str:
    data = report.as_dict()
    rooms: dict[str, dict[str, Any]] = data["rooms"]
    lines = data["lines"]
    out = [
        f"rooms: {len(rooms)}; lines read: {lines['read']} ({lines['room_events']} room events, "
        f"{lines['not_room_events']} other events, {lines['not_json']} not JSON, "
        f"{lines['filtered_out']} outside the filters)",
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
    return "\n".join(out) + "\n"


def _room_row(name: str, room: dict[str, Any]) -> list[str]:
    median = room["median_connection_ms"]
    busiest = room["busiest_minute"]
    return [
        name, str(room["accepted"]), str(room["resends"]), str(sum(room["rejected"].values())),
        str(room["users"]), str(room["connections"]),
        "-" if median is None else f"{'' if room['median_exact'] else '~'}{median} ms",
        "-" if busiest is None else f"{busiest['minute']} ({busiest['messages']})",
    ]


# ---- command line ----------------------------------------------------------

def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py report", description="Per-room traffic report of the server's JSON logs.")
    parser.add_argument("--room", help="only this room")
    parser.add_argument("--since", type=_time_arg, help="from this ISO 8601 time (inclusive)")
    parser.add_argument("--until", type=_time_arg, help="up to this ISO 8601 time (exclusive)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
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
    render = render_json if args.format == "json" else render_table
    try:
        sys.stdout.write(render(report) + ("\n" if args.format == "json" else ""))
        sys.stdout.flush()
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error; keep Python from reporting it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
