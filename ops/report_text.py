"""``server.py report``'s text forms: the table a person reads and the JSON a script reads."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

import orjson

from ops.report_counts import parse_time
from ops.report_model import TrafficReport


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
