"""The traffic report's timeline as chart bars: per second for a short log, per minute (or more) for a long one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

from ops.report_counts import parse_time
from ops.report_model import TrafficReport

MAX_BARS = 240  # longer timelines are drawn in buckets of several minutes


@dataclass(frozen=True)
class Bucket:
    """One bar of the charts: ``seconds`` seconds from ``start`` (UTC, to the minute or to the second)."""

    start: str
    seconds: int
    messages: int
    joins: int
    leaves: int
    rejected: int
    events: tuple[str, ...]

    @property
    def end(self) -> datetime:
        return parse_time(self.start) + timedelta(seconds=self.seconds)


PER_SECOND_UP_TO = 15 * 60  # a log spanning no longer than this is drawn per second (or a few)
SECOND_SIZES = (1, 2, 5, 10, 15, 30)


def buckets(timeline: Sequence[dict[str, Any]], unit: int = 60) -> list[Bucket]:
    """Every ``unit`` (60: minute, 1: second) from the first to the last, quiet ones too (so
    time runs evenly along the axis), merged into at most MAX_BARS buckets of a round size."""
    if not timeline:
        return []
    first = parse_time(timeline[0]["minute"][:-1])
    last = parse_time(timeline[-1]["minute"][:-1])
    span = int((last - first).total_seconds() // unit) + 1
    size = math.ceil(span / MAX_BARS)
    if unit == 1:
        size = next((s for s in SECOND_SIZES if s >= size), 60)
    by_index: dict[int, list[dict[str, Any]]] = {}
    for entry in timeline:
        index = int((parse_time(entry["minute"][:-1]) - first).total_seconds() // unit) // size
        by_index.setdefault(index, []).append(entry)
    shape = "%Y-%m-%dT%H:%M:%S" if unit == 1 else "%Y-%m-%dT%H:%M"
    result = []
    for index in range(math.ceil(span / size)):
        entries = by_index.get(index, [])
        start = (first + timedelta(seconds=index * size * unit)).strftime(shape)
        counts = {key: sum(e[key] for e in entries) for key in ("messages", "joins", "leaves", "rejected")}
        result.append(
            Bucket(start=start, seconds=size * unit, events=tuple(ev for e in entries for ev in e["events"]), **counts)
        )
    return result


def timeline_bars(report: TrafficReport, by_minute: Sequence[dict[str, Any]]) -> list[Bucket]:
    """Bars that fit the span: seconds for a few minutes, minutes (or several) for hours and days."""
    per_second = report.by_second()
    if per_second:
        first = parse_time(per_second[0]["minute"][:-1])
        if (parse_time(per_second[-1]["minute"][:-1]) - first).total_seconds() <= PER_SECOND_UP_TO:
            return buckets(per_second, unit=1)
    return buckets(by_minute)


def per_text(bars: list[Bucket]) -> str:
    """``second``, ``5 seconds``, ``minute``, ``10 minutes``: what one bar counts."""
    size = bars[0].seconds if bars else 60
    if size % 60 == 0:
        return "minute" if size == 60 else f"{size // 60} minutes"
    return "second" if size == 1 else f"{size} seconds"
