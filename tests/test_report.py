"""``server.py report`` on the frozen log of a real run (tests/data/traffic.log).

The log was written by server.py itself, driven by tests/traffic.py
(tests/data/make_traffic_log.py); ``EXPECTED`` there says what the script did,
so the counts below are the script's, and the durations and minute are read
off the frozen file.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.report import main
from ops.report_counts import DurationMedian, parse_time
from ops.report_html import STYLE
from ops.report_model import TrafficReport
from ops.report_text import display_width, render_table
from tests.browser import chromium
from tests.traffic import EXPECTED

ROOT = Path(__file__).resolve().parent.parent
TRAFFIC_LOG = ROOT / "tests" / "data" / "traffic.log"
MINUTE = "2026-11-24T16:09Z"
# Medians of the frozen ws.disconnect durations: lobby (78, 103, 105, 106) ms,
# café (70, 73) ms, quiet (1) ms; an even count averages the middle two, half up.
MEDIANS = {"lobby": 104, "café": 72, "quiet": 1}
BUSIEST = {"lobby": {"minute": MINUTE, "messages": 9}, "café": {"minute": MINUTE, "messages": 2}, "quiet": None}

SPAN = "span: 2026-11-24T16:09:37.855298Z to 2026-11-24T16:09:38.070069Z (0.2 s)"
TABLE = f"""\
rooms: 3; lines read: 47 (31 room events, 16 other events, 0 not JSON, 0 outside the filters)
{SPAN}

room   accepted  resends  rejected  users  connections  median conn         busiest minute
café          2        0         0      2            2        72 ms  {MINUTE} (2)
lobby         9        1         5      3            4       104 ms  {MINUTE} (9)
quiet         0        0         0      1            1         1 ms                      -

rejected by reason:
  café   -
  lobby  bad_json 1, bad_request 1, message_too_long 1, rate_limited 2
  quiet  -

close codes:
  café   1001 2
  lobby  1000 2, 1001 1, 1009 1
  quiet  none 1

by user (most messages first):
  room   user          messages  rejected  connections
  café   ann                  1         0            1
  café   dan                  1         0            1
  lobby  cy                   4         2            1
  lobby  ann                  3         0            1
  lobby  bob                  2         3            2
  quiet  guest-95e091         0         0            1
"""
# tests/traffic.py's script: in the lobby ann sent 3 (and one resend), bob 2
# with 3 refused over 2 connections, cy 4 with 2 rate limited; in café ann
# and dan 1 each. All in the one minute the run took, which the process's
# start and stop mark.
BY_MINUTE = """
by minute (UTC; joins and leaves are connections opened and closed):
minute            messages  joins  leaves  rejected  events
2026-11-24 16:09        11      7       7         5  node-a started; node-a stopped
"""
HTML_PAGE = ROOT / "tests" / "data" / "traffic-report.html"
NO_BAD = {"bad_timestamp": 0}


def run_report(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real command line: ``python server.py report ...``."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "report", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        cwd=ROOT,
    )


def expected_room(name: str) -> dict[str, Any]:
    return {**EXPECTED[name], "median_connection_ms": MEDIANS[name], "busiest_minute": BUSIEST[name]}


def first_timestamp(event: str, room: str) -> str:
    for line in TRAFFIC_LOG.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["event"] == event and record.get("room") == room:
            return str(record["timestamp"])
    raise AssertionError(f"no {event} in {room}")


def test_the_json_report_of_the_frozen_run_has_the_scripted_numbers() -> None:
    result = run_report("--format", "json", str(TRAFFIC_LOG))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["rooms"]) == ["café", "lobby", "quiet"]
    for name, room in report["rooms"].items():
        assert {key: room[key] for key in expected_room(name)} == expected_room(name), name
    counts = {"read": 47, "room_events": 31, "not_json": 0, "not_room_events": 16, "filtered_out": 0}
    assert report["lines"] == {**counts, **NO_BAD}


def test_the_table_report_of_the_frozen_run_reads_exactly() -> None:
    result = run_report(str(TRAFFIC_LOG))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8") == TABLE


def test_stdin_is_read_and_lines_that_are_not_room_events_are_counted_and_skipped() -> None:
    noise = b'not json at all\n{"event": "ws.connect"}\n[1, 2]\n\n{"event":"message.accepted","room":7}\n'
    result = run_report("--format", "json", stdin=TRAFFIC_LOG.read_bytes() + noise)
    report = json.loads(result.stdout)
    counts = {"read": 52, "room_events": 31, "not_json": 2, "not_room_events": 19, "filtered_out": 0}
    assert report["lines"] == {**counts, **NO_BAD}
    assert report["rooms"]["lobby"]["accepted"] == 9


def test_a_line_with_a_bad_timestamp_is_skipped_and_counted_not_a_traceback() -> None:
    bad = b'{"timestamp": "2026-13-45T10:00:00.000000Z", "event": "message.accepted", "room": "lobby", "user": "x"}\n'
    odd = b'{"timestamp": "yesterday", "event": "ws.connect", "room": "lobby", "user": "y"}\n'
    for form in ("json", "table", "html"):
        result = run_report("--format", form, "--by-minute", stdin=TRAFFIC_LOG.read_bytes() + bad + odd)
        assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
        if form == "json":
            report = json.loads(result.stdout)
            assert report["lines"]["bad_timestamp"] == 2 and report["lines"]["read"] == 49
            assert report["rooms"]["lobby"]["accepted"] == 9 and report["span"]["to"].startswith("2026-11-24")
        else:
            assert b"2 with a bad timestamp" in result.stdout


def test_room_filter_keeps_one_room() -> None:
    report = json.loads(run_report("--format", "json", "--room", "café", str(TRAFFIC_LOG)).stdout)
    assert list(report["rooms"]) == ["café"]
    assert report["rooms"]["café"]["accepted"] == 2
    assert report["lines"]["filtered_out"] == 31 - 6


def test_since_counts_what_happened_from_that_moment() -> None:
    since = first_timestamp("ws.connect", "café")
    report = json.loads(run_report("--format", "json", "--since", since, str(TRAFFIC_LOG)).stdout)
    lobby = report["rooms"]["lobby"]
    # Only bob's second connection, opened before the window, ends inside it (SIGTERM: 1001).
    assert (lobby["accepted"], lobby["connections"], lobby["disconnections"], lobby["users"]) == (0, 0, 1, 1)
    assert lobby["close_codes"] == {"1001": 1} and lobby["busiest_minute"] is None
    assert report["rooms"]["café"]["accepted"] == 2 and report["rooms"]["quiet"]["connections"] == 1
    assert report["lines"]["filtered_out"] == 31 - 9


def test_until_is_exclusive_and_stops_before_that_moment() -> None:
    until = first_timestamp("ws.connect", "café")
    report = json.loads(run_report("--format", "json", "--until", until, str(TRAFFIC_LOG)).stdout)
    assert list(report["rooms"]) == ["lobby"]
    lobby = report["rooms"]["lobby"]
    assert (lobby["accepted"], lobby["connections"], lobby["disconnections"]) == (9, 4, 3)
    assert lobby["close_codes"] == {"1000": 2, "1009": 1}


def test_a_bad_timestamp_is_refused_with_usage_status() -> None:
    result = run_report("--since", "yesterday", str(TRAFFIC_LOG))
    assert result.returncode == 2 and b"not an ISO 8601 timestamp" in result.stderr


def test_a_missing_file_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT / "tests" / "data" / "no-such.log")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_an_empty_log_says_so() -> None:
    assert "no room traffic" in render_table(TrafficReport().feed_all([]))


def test_timestamps_without_offset_are_utc_and_offsets_are_honoured() -> None:
    assert parse_time("2026-01-01T10:00") == parse_time("2026-01-01T11:00+01:00")
    report = TrafficReport().feed_all(
        [
            json.dumps({"event": "message.accepted", "room": "r", "user": "u", "timestamp": t})
            for t in ("2026-01-01T11:00:30+01:00", "2026-01-01T10:00:59Z", "2026-01-01T10:01:00Z")
        ]
    )
    assert report.rooms["r"].busiest_minute() == {"minute": "2026-01-01T10:00Z", "messages": 2}


def test_median_is_exact_up_to_the_limit_then_within_one_percent() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(8, 2) for _ in range(50_001)]
    small, large = DurationMedian(), DurationMedian()
    for value in values[: DurationMedian.EXACT_LIMIT]:
        small.add(value)
    for value in values:
        large.add(value)
    # The exact median, worked out here rather than by the statistics module the code uses.
    ordered = sorted(values[: DurationMedian.EXACT_LIMIT])
    middle = len(ordered) // 2
    expected = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    assert small.exact and small.median() == pytest.approx(expected, rel=1e-12)
    true_median = sorted(values)[len(values) // 2]
    assert not large.exact
    assert abs(large.median() - true_median) / true_median < 0.01  # type: ignore[operator]


# ---- what happened in room X: span, per user, by minute, HTML ------------------------


def test_by_minute_on_the_frozen_run_reads_exactly() -> None:
    result = run_report("--by-minute", str(TRAFFIC_LOG))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8") == TABLE + BY_MINUTE


def test_by_minute_and_per_user_in_json_on_the_frozen_run() -> None:
    report = json.loads(run_report("--format", "json", "--by-minute", str(TRAFFIC_LOG)).stdout)
    assert report["span"] == {
        "from": "2026-11-24T16:09:37.855298Z",
        "to": "2026-11-24T16:09:38.070069Z",
        "seconds": 0.215,
    }
    assert report["by_minute"] == [
        {
            "minute": MINUTE,
            "messages": 11,
            "joins": 7,
            "leaves": 7,
            "rejected": 5,
            "events": ["node-a started", "node-a stopped"],
        }
    ]
    assert report["rooms"]["lobby"]["per_user"] == {
        "cy": {"messages": 4, "rejected": 2, "connections": 1},
        "ann": {"messages": 3, "rejected": 0, "connections": 1},
        "bob": {"messages": 2, "rejected": 3, "connections": 2},
    }
    plain = json.loads(run_report("--format", "json", str(TRAFFIC_LOG)).stdout)
    assert "by_minute" not in plain  # only when asked for


def test_one_room_by_minute_answers_what_happened_in_that_room() -> None:
    result = run_report("--room", "café", "--by-minute", str(TRAFFIC_LOG))
    text = result.stdout.decode("utf-8")
    assert text.endswith("2026-11-24 16:09         2      2       2         0  node-a started; node-a stopped\n")
    assert re.search(r"^  café +ann +1 +0 +1 +node-a 1$", text, re.M) and "lobby" not in text  # who served whom


def test_the_html_report_of_the_frozen_run_is_exactly_the_frozen_page() -> None:
    result = run_report("--format", "html", str(TRAFFIC_LOG))
    assert result.returncode == 0, result.stderr
    page = result.stdout.decode("utf-8")
    # The frozen page is the whole page but the stylesheet's text (ops/report_html.py's
    # STYLE, which must stand in it once). To change the page on purpose:
    #   .venv/bin/python server.py report --format html tests/data/traffic.log | .venv/bin/python -c \
    #     "import sys; from ops.report_html import STYLE; print(sys.stdin.read().replace(STYLE, ''), end='')" \
    #     > tests/data/traffic-report.html
    assert page.count(f"<style>{STYLE}</style>") == 1
    assert page.replace(STYLE, "") == HTML_PAGE.read_text(encoding="utf-8")
    # Self-contained: nothing fetched, nothing run.
    assert not re.search(r"<script|<link|<img|\b(src|href)=", page)


def test_the_html_report_opens_in_chromium_and_shows_its_charts(tmp_path: Path) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_bytes(run_report("--format", "html", str(TRAFFIC_LOG)).stdout)
    shown = asyncio.run(asyncio.wait_for(look_at(page_file, tmp_path / "report.png"), 60))
    assert shown["errors"] == []
    assert shown["charts"] == [  # the run took 0.2 s: a bar per second, not per minute
        "Messages accepted per second",
        "Connections opened (joins) and closed (leaves) per second",
        "Messages rejected per second",
    ]
    # Every chart is drawn and on the page: bars with a height, one per series, and the marked events.
    totals: dict[str, int] = {}
    for series, value in shown["bars"]:  # two bars each: the run spans second :37 and second :38
        totals[series] = totals.get(series, 0) + value
    assert totals == {"messages": 11, "joins": 7, "leaves": 7, "rejected": 5}
    assert all(width > 300 and height > 150 for width, height in shown["sizes"]), shown["sizes"]
    assert shown["events"] == 6 and shown["screenshot"] > 10_000  # started and stopped, a second apart, in 3 charts


async def look_at(page_file: Path, screenshot: Path) -> dict[str, Any]:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 800})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(page_file.as_uri())
        charts = await page.locator("figure figcaption").all_text_contents()
        bars = await page.locator("svg rect.bar").evaluate_all(
            "rects => rects.filter(r => r.getBoundingClientRect().height > 0)"
            "              .map(r => [r.classList[1], Number(r.querySelector('title').textContent.split(' ')[1])])"
        )
        sizes = await page.locator("figure svg").evaluate_all(
            "svgs => svgs.map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height])"
        )
        events = await page.locator("svg g.event").count()
        await page.screenshot(path=str(screenshot), full_page=True)
        return {
            "errors": errors,
            "charts": charts,
            "bars": bars,
            "sizes": sizes,
            "events": events,
            "screenshot": screenshot.stat().st_size,  # noqa: ASYNC240 (one stat of a local file)
        }


def log_line(timestamp: str, event: str, **fields: Any) -> str:
    return json.dumps({"event": event, "timestamp": timestamp, "node": "node-1", "level": "info", **fields})


def test_outages_and_restarts_are_marked_and_quiet_minutes_counted() -> None:
    lines = [
        log_line("2026-11-24T09:00:01.000000Z", "server.started"),
        log_line("2026-11-24T09:00:02.000000Z", "ws.connect", room="r", user="ann"),
        log_line("2026-11-24T09:00:03.000000Z", "message.accepted", room="r", user="ann"),
        log_line("2026-11-24T09:01:00.000000Z", "bus.error"),
        log_line("2026-11-24T09:01:05.000000Z", "message.rejected", room="r", user="ann", reason="unavailable"),
        log_line("2026-11-24T09:05:00.000000Z", "bus.recovered"),
        log_line("2026-11-24T09:05:10.000000Z", "message.accepted", room="r", user="ann"),
        log_line("2026-11-24T09:06:00.000000Z", "server.stopped"),
        log_line("2026-11-24T09:06:00.500000Z", "ws.disconnect", room="r", user="ann", code=1001, duration_ms=5),
        log_line("2026-11-24T09:06:02.000000Z", "server.started"),
        log_line("2026-11-24T09:06:03.000000Z", "server.stopped"),
        log_line("2026-11-24T09:06:04.000000Z", "server.started"),
    ]
    text = render_table(TrafficReport().feed_all(lines), by_minute=True)
    assert "span: 2026-11-24T09:00:01.000000Z to 2026-11-24T09:06:04.000000Z (6 min 3 s)" in text
    assert (
        text.split("by minute (UTC; joins and leaves are connections opened and closed):\n")[1]
        == """\
minute            messages  joins  leaves  rejected  events
2026-11-24 09:00         1      1       0         0  node-1 started
2026-11-24 09:01         0      0       0         1  node-1 lost its bus
  ... 3 quiet minutes
2026-11-24 09:05         1      0       0         0  node-1 bus back
2026-11-24 09:06         0      0       1         0  node-1 stopped ×2; node-1 started ×2
"""
    )


def test_wide_and_combining_characters_keep_the_columns_aligned() -> None:
    lines = [
        log_line("2026-11-24T09:00:01.000000Z", "message.accepted", room=room, user=user)
        for room, user in (("日本語", "山田"), ("cafe\u0301", "zoe\u0308"), ("x", "ann"))
    ]
    text = render_table(TrafficReport().feed_all(lines))
    users = text.split("by user (most messages first):\n")[1].splitlines()
    ends = {display_width(line) for line in users}  # every row ends where the last column does
    assert len(ends) == 1, users
    rooms = text.split("\n\n")[1].splitlines()
    assert len({display_width(line[: line.index(" 1 ")]) for line in rooms[1:]}) == 1, rooms


@pytest.mark.parametrize(
    "values,median", [([], None), ([7.0], 7.0), ([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5), ([5.0, 5.0], 5.0)]
)
def test_small_medians_by_hand(values: list[float], median: float | None) -> None:
    durations = DurationMedian()
    for value in values:
        durations.add(value)
    assert durations.median() == median and len(durations) == len(values)


def short_and_long_logs() -> tuple[list[str], list[str]]:
    """Five minutes of two processes (an outage each, a crash, a restart), and three hours of one."""
    short = [
        log_line("2026-11-24T09:00:00.000000Z", "server.started"),
        log_line("2026-11-24T09:00:00.5Z", "server.started", node="node-2"),
    ]
    for second in range(300):
        stamp = f"2026-11-24T09:{second // 60:02d}:{second % 60:02d}.000000Z"
        short.append(log_line(stamp, "message.accepted", room="r", user="ann", node=("node-1", "node-2")[second % 2]))
    for stamp, event, node in (
        ("09:01:02", "bus.error", "node-2"),
        ("09:01:04", "bus.error", "node-1"),
        ("09:01:10", "bus.recovered", "node-2"),
        ("09:01:11", "bus.recovered", "node-1"),
        ("09:02:30", "server.started", "node-1"),  # no stop before it: a crash
        ("09:03:20", "server.stopped", "node-2"),
        ("09:03:23", "server.started", "node-2"),
    ):
        short.append(log_line(f"2026-11-24T{stamp}.000000Z", event, node=node))
    long = [log_line("2026-11-24T09:00:00.000000Z", "server.started")]
    for minute in range(180):
        long.append(
            log_line(
                f"2026-11-24T{9 + minute // 60:02d}:{minute % 60:02d}:30.000000Z",
                "message.accepted",
                room="r",
                user="ann",
            )
        )
    return short, long


def test_a_process_that_started_again_without_a_stop_is_shown_as_a_crash() -> None:
    short, _ = short_and_long_logs()
    minutes = TrafficReport().feed_all(short).by_minute()
    events = {entry["minute"]: entry["events"] for entry in minutes}
    assert events["2026-11-24T09:02Z"] == ["node-1 crashed; started again"]
    assert events["2026-11-24T09:03Z"] == ["node-2 stopped", "node-2 started"]  # a restart, not a crash
    assert events["2026-11-24T09:00Z"] == ["node-1 started", "node-2 started"]


def test_the_chart_bars_fit_the_span_seconds_for_minutes_minutes_for_hours() -> None:
    from ops.report_timeline import per_text, timeline_bars

    short, long = short_and_long_logs()
    for lines, per, count in ((short, "2 seconds", 150), (long, "minute", 180)):
        report = TrafficReport().feed_all(lines)
        bars = timeline_bars(report, report.by_minute())
        assert (per_text(bars), len(bars)) == (per, count)
        assert sum(bar.messages for bar in bars) == len([line for line in lines if "message.accepted" in line])


def test_one_rooms_json_says_which_process_served_each_users_connections() -> None:
    lines = [
        log_line("2026-11-24T09:00:00Z", "ws.connect", room="r", user="ann", node="node-1"),
        log_line("2026-11-24T09:00:01Z", "ws.connect", room="r", user="ann", node="node-2"),
        log_line("2026-11-24T09:00:02Z", "ws.connect", room="r", user="bob", node="node-2"),
        log_line("2026-11-24T09:00:03Z", "ws.connect", room="other", user="cy", node="node-1"),
    ]
    one = TrafficReport(room="r").feed_all(lines).as_dict()
    assert one["rooms"]["r"]["processes"] == {"ann": {"node-1": 1, "node-2": 1}, "bob": {"node-2": 1}}
    assert "processes" not in TrafficReport().feed_all(lines).as_dict()["rooms"]["r"]  # the all-rooms view as before


def test_event_labels_overlap_no_bar_and_no_other_label(tmp_path: Path) -> None:
    from ops.report_html import render_html

    short, _ = short_and_long_logs()
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(TrafficReport().feed_all(short)), encoding="utf-8")
    boxes = asyncio.run(asyncio.wait_for(label_and_bar_boxes(page_file), 60))
    for chart in boxes:
        labels, bars = chart["labels"], chart["bars"]
        assert len(labels) == 7  # the marked buckets of the log (2 s each), each labelled
        for k, a in enumerate(labels):
            assert not any(overlap(a, b) for b in labels[k + 1 :]), (a, labels)
            assert not any(overlap(a, bar) for bar in bars), a


def overlap(a: list[float], b: list[float]) -> bool:
    """Two boxes (left, top, right, bottom) that share more than an edge."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


async def label_and_bar_boxes(page_file: Path) -> list[dict[str, list[list[float]]]]:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(page_file.as_uri())
        return await page.locator("figure svg").evaluate_all(
            """svgs => svgs.map(svg => {
                const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
                return {labels: [...svg.querySelectorAll("text.event-label")].map(box),
                        bars: [...svg.querySelectorAll("rect.bar")].filter(r => r.getBBox().height > 0).map(box)};
            })"""
        )
