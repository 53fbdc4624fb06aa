"""``server.py report --format html``: the traffic report as one self-contained page.

For an operator who would rather look than read: the span, a chart each of
messages, of connections opened and closed, and of rejections per minute
(the processes' starts, stops and bus outages drawn as marked lines across
them), then the tables of the text report. Charts are inline SVG written
here (no charting dependency, no script, nothing fetched): the page is one
file that opens anywhere, and every number on it is text a browser can find.
Every string from the log goes through ``html.escape``.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from ops.report_counts import NODE_MARKS, parse_time
from ops.report_model import TrafficReport
from ops.report_text import bad_timestamps_text, processes_text, span_text
from ops.report_timeline import Bucket, per_text, timeline_bars

WIDTH, HEIGHT = 760, 200  # the plot area of one chart, in SVG units
LEFT, BOTTOM, TOP = 48, 28, 12
COLOURS = {"messages": "#2b6cb0", "joins": "#1f7a4d", "leaves": "#9a4d00", "rejected": "#b42318"}

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; background: #f4f5f7; }
main { max-width: 62rem; margin: 0 auto; padding: 1.25rem 1rem 2rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.meta { color: #5f6670; margin: 0; }
figure { background: #fff; border: 1px solid #d6d9de; border-radius: 8px; margin: 1rem 0; padding: .75rem; }
figcaption { font-weight: 600; margin-bottom: .25rem; }
svg { width: 100%; height: auto; display: block; }
.legend span { margin-right: 1rem; } .legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d6d9de; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e5e7eb; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td { font-variant-numeric: tabular-nums; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


MAX_BAR = 40.0  # a short timeline still looks like a timeline, not one block
EVENT_LABELS = 12  # more marked buckets than this: the labels only on hover
LABEL_ROW = 14  # SVG units per row of event labels, above the plot
CHAR_WIDTH = 6.2  # about one character at font-size 11, to keep labels apart


def chart(title: str, bars: list[Bucket], series: Sequence[str]) -> str:
    """A bar chart of ``series`` (side by side per bucket) with the events as marked lines.

    The events' labels go in rows above the plot, each in the first row where
    it overlaps no other label: they never cover a bar or each other.
    """
    peak = max([1] + [getattr(bar, name) for bar in bars for name in series])
    step = WIDTH / max(1, len(bars))
    labels = _label_rows(bars, step)
    top = TOP + LABEL_ROW * (1 + max((row for _, _, row, _ in labels), default=-1))
    width = min(MAX_BAR, max(1.0, step * 0.8 / len(series)))
    shapes: list[str] = []
    for i, bar in enumerate(bars):
        x0 = LEFT + i * step + (step - width * len(series)) / 2
        for j, name in enumerate(series):
            value = getattr(bar, name)
            height = HEIGHT * value / peak
            shapes.append(
                f'<rect class="bar {name}" x="{x0 + j * width:.1f}" y="{top + HEIGHT - height:.1f}" '
                f'width="{width:.1f}" height="{height:.1f}" fill="{COLOURS[name]}">'
                f"<title>{_e(bar.start)}Z: {value} {name}</title></rect>"
            )
    shapes += _event_marks(bars, step, top, labels)
    return _figure(title, bars, series, peak, shapes, top)


def _label_rows(bars: list[Bucket], step: float) -> list[tuple[int, float, int, str]]:
    """(bar, x where the label starts, row, anchor) of each marked bar's label, when they are few enough."""
    marked = [(i, bar) for i, bar in enumerate(bars) if bar.events]
    if len(marked) > EVENT_LABELS:
        return []
    rows: list[list[tuple[float, float]]] = []
    placed = []
    for i, bar in marked:
        x = LEFT + i * step + step / 2
        length = CHAR_WIDTH * len("; ".join(bar.events))
        # Towards the right when it fits, else ending at the line (towards the left).
        start, anchor = (x + 4, "start") if x + 4 + length <= LEFT + WIDTH + 8 else (x - 4, "end")
        span = (start, start + length) if anchor == "start" else (start - length, start)
        row = next(
            (r for r, taken in enumerate(rows) if all(span[1] + 6 < a or span[0] > b + 6 for a, b in taken)), None
        )
        if row is None:
            row = len(rows)
            rows.append([])
        rows[row].append(span)
        placed.append((i, start, row, anchor))
    return placed


def _event_marks(bars: list[Bucket], step: float, top: float, labels: list[tuple[int, float, int, str]]) -> list[str]:
    """A dashed line through each bucket with events, from its label (above the plot) down."""
    marks = _outages(bars, step, top)
    where = {i: (start, row, anchor) for i, start, row, anchor in labels}
    for i, bar in enumerate(bars):
        if not bar.events:
            continue
        x = LEFT + i * step + step / 2
        text = "; ".join(bar.events)
        label, line_top = "", top
        if i in where:
            start, row, anchor = where[i]
            y = TOP + 10 + LABEL_ROW * row
            label = (
                f'<text class="event-label" x="{start:.1f}" y="{y}" text-anchor="{anchor}" fill="#6a4fb5">'
                f"{_e(text)}</text>"
            )
            line_top = y - 10
        marks.append(
            f'<g class="event"><line x1="{x:.1f}" x2="{x:.1f}" y1="{line_top}" y2="{top + HEIGHT}" stroke="#6a4fb5" '
            f'stroke-width="2" stroke-dasharray="5 3"/>{label}<title>{_e(bar.start)}Z: {_e(text)}</title></g>'
        )
    return marks


def _outages(bars: list[Bucket], step: float, top: float) -> list[str]:
    """A shaded band from each "lost its bus" to that process's next "bus back"."""
    lost: dict[str, int] = {}
    bands = []
    for i, bar in enumerate(bars):
        for event in bar.events:
            node, _, what = event.partition(" ")
            what = what.split(" ×")[0]
            if what == NODE_MARKS["bus.error"]:
                lost.setdefault(node, i)
            elif what == NODE_MARKS["bus.recovered"] and node in lost:
                start = lost.pop(node)
                bands.append(
                    f'<rect class="outage" x="{LEFT + start * step + step / 2:.1f}" y="{top}" '
                    f'width="{(i - start) * step:.1f}" height="{HEIGHT}" fill="#b42318" fill-opacity="0.08">'
                    f"<title>{_e(node)} without its bus</title></rect>"
                )
    return bands


def _figure(title: str, bars: list[Bucket], series: Sequence[str], peak: int, shapes: list[str], top: float) -> str:
    shape = "%Y-%m-%d %H:%M:%S" if bars and bars[0].seconds < 60 else "%Y-%m-%d %H:%M"
    axis = [
        f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{top + HEIGHT}" y2="{top + HEIGHT}" stroke="#5f6670"/>',
        f'<text x="{LEFT - 6}" y="{top + 10}" text-anchor="end">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{top + HEIGHT}" text-anchor="end">0</text>',
    ]
    if bars:
        first = parse_time(bars[0].start).strftime(shape)
        axis.append(f'<text x="{LEFT}" y="{top + HEIGHT + 18}">{_e(first)}</text>')
    if len(bars) > 1:
        axis.append(
            f'<text x="{LEFT + WIDTH}" y="{top + HEIGHT + 18}" text-anchor="end">{bars[-1].end.strftime(shape)}</text>'
        )
    legend = "".join(f'<span><i style="background:{COLOURS[name]}"></i>{name}</span>' for name in series)
    total = {name: sum(getattr(bar, name) for bar in bars) for name in series}
    summary = ", ".join(f"{total[name]} {name}" for name in series)
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg viewBox="0 0 {LEFT + WIDTH + 8} {top + HEIGHT + BOTTOM}" role="img" font-size="11" fill="#1f2328" '
        f'aria-label="{_e(title)}: {_e(summary)}">{"".join(axis)}{"".join(shapes)}</svg>'
        f'<div class="legend">{legend}<span>dashed line: a process started, stopped, crashed, or lost its bus '
        f"or got it back; shaded: a bus outage</span></div></figure>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> str:
    def cells(tag: str, row: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{' class=text' if not isinstance(cell, int) or i < text_columns else ''}>{_e(cell)}</{tag}>"
            for i, cell in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _rooms_table(rooms: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, room in rooms.items():
        median = room["median_connection_ms"]
        busiest = room["busiest_minute"]
        rows.append(
            [
                name,
                room["accepted"],
                room["resends"],
                ", ".join(f"{reason} {n}" for reason, n in room["rejected"].items()) or "-",
                room["users"],
                room["connections"],
                "-" if median is None else f"{'' if room['median_exact'] else '~'}{median} ms",
                ", ".join(f"{code} {n}" for code, n in room["close_codes"].items()) or "-",
                "-" if busiest is None else f"{busiest['minute']} ({busiest['messages']})",
            ]
        )
    return _table(
        [
            "room",
            "accepted",
            "resends",
            "rejected",
            "users",
            "connections",
            "median conn",
            "close codes",
            "busiest minute",
        ],
        rows,
    )


def _users_table(rooms: dict[str, dict[str, Any]]) -> str:
    one_room = any("processes" in room for room in rooms.values())  # --room: which process served whom
    rows = [
        [name, user, c.messages, c.rejected, c.connections]
        + ([processes_text(room["processes"].get(user, {}))] if one_room else [])
        for name, room in rooms.items()
        for user, c in room["per_user"].items()
    ]
    header = ["room", "user", "messages", "rejected", "connections"] + (["processes"] if one_room else [])
    return _table(header, rows, text_columns=2)


def _events_table(timeline: Sequence[dict[str, Any]]) -> str:
    rows = [[entry["minute"], "; ".join(entry["events"])] for entry in timeline if entry["events"]]
    if not rows:
        return "<p>No process started, stopped or lost its bus in this span.</p>"
    return _table(["minute (UTC)", "events"], rows, text_columns=2)


def render_html(report: TrafficReport) -> str:
    data = report.as_dict(by_minute=True)
    filters = data["filters"]
    scope = f"room {filters['room']}" if filters["room"] else "all rooms"
    bars = timeline_bars(report, data["by_minute"])
    per = per_text(bars)
    lines = data["lines"]
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Chat traffic report: {_e(scope)}</title><style>{STYLE}</style></head><body><main>",
            f"<h1>Chat traffic report: {_e(scope)}</h1>",
            f'<p class="meta">{_e(span_text(data["span"]))}; times in UTC</p>',
            f'<p class="meta">{lines["read"]} lines read: {lines["room_events"]} room events, '
            f"{lines['not_room_events']} other events, {lines['not_json']} not JSON, "
            f"{lines['filtered_out']} outside the filters{bad_timestamps_text(lines)}.</p>",
            "<h2>Timeline</h2>",
            chart(f"Messages accepted per {per}", bars, ["messages"]),
            chart(f"Connections opened (joins) and closed (leaves) per {per}", bars, ["joins", "leaves"]),
            chart(f"Messages rejected per {per}", bars, ["rejected"]),
            "<h2>Restarts and outages</h2>",
            _events_table(data["by_minute"]),
            "<h2>Rooms</h2>",
            _rooms_table(data["rooms"]) if data["rooms"] else "<p>No room traffic.</p>",
            "<h2>Users</h2>",
            _users_table(data["rooms"]) if data["rooms"] else "<p>No users.</p>",
            "</main></body></html>\n",
        ]
    )
