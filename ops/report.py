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
(ops/report_html.py; the model in ops/report_model.py, the table in
ops/report_text.py). Lines that are not JSON, JSON but not a room event, or
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
import os
import sys
from datetime import datetime
from typing import IO, Iterator, Sequence

import orjson

from ops.report_counts import parse_time
from ops.report_model import TrafficReport
from ops.report_text import render_table

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
