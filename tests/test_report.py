"""Section 6: ``server.py report`` on the frozen log of a real run (tests/data/traffic.log).

The log was written by server.py itself, driven by tests/traffic.py
(tests/data/make_traffic_log.py); ``EXPECTED`` there says what the script did,
so the counts below are the script's, and the durations and minute are read
off the frozen file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.report import DurationMedian, TrafficReport, main, parse_time, render_table
from tests.traffic import EXPECTED

ROOT = Path(__file__).resolve().parent.parent
TRAFFIC_LOG = ROOT / "tests" / "data" / "traffic.log"
MINUTE = "2026-11-24T16:09Z"
# Medians of the frozen ws.disconnect durations: lobby (78, 103, 105, 106) ms,
# café (70, 73) ms, quiet (1) ms; an even count averages the middle two, half up.
MEDIANS = {"lobby": 104, "café": 72, "quiet": 1}
BUSIEST = {"lobby": {"minute": MINUTE, "messages": 9}, "café": {"minute": MINUTE, "messages": 2}, "quiet": None}

TABLE = f"""\
rooms: 3; lines read: 47 (31 room events, 16 other events, 0 not JSON, 0 outside the filters)

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
"""


def run_report(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real command line: ``python server.py report ...``."""
    return subprocess.run([sys.executable, str(ROOT / "server.py"), "report", *args],
                          input=stdin, capture_output=True, timeout=30, cwd=ROOT)


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
    assert report["lines"] == {"read": 47, "room_events": 31, "not_json": 0, "not_room_events": 16,
                               "filtered_out": 0}


def test_the_table_report_of_the_frozen_run_reads_exactly() -> None:
    result = run_report(str(TRAFFIC_LOG))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8") == TABLE


def test_stdin_is_read_and_lines_that_are_not_room_events_are_counted_and_skipped() -> None:
    noise = b'not json at all\n{"event": "ws.connect"}\n[1, 2]\n\n{"event":"message.accepted","room":7}\n'
    result = run_report("--format", "json", stdin=TRAFFIC_LOG.read_bytes() + noise)
    report = json.loads(result.stdout)
    assert report["lines"] == {"read": 52, "room_events": 31, "not_json": 2, "not_room_events": 19,
                               "filtered_out": 0}
    assert report["rooms"]["lobby"]["accepted"] == 9


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
    report = TrafficReport().feed_all([
        json.dumps({"event": "message.accepted", "room": "r", "user": "u", "timestamp": t})
        for t in ("2026-01-01T11:00:30+01:00", "2026-01-01T10:00:59Z", "2026-01-01T10:01:00Z")
    ])
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


@pytest.mark.parametrize("values,median", [
    ([], None), ([7.0], 7.0), ([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5), ([5.0, 5.0], 5.0),
])
def test_small_medians_by_hand(values: list[float], median: float | None) -> None:
    durations = DurationMedian()
    for value in values:
        durations.add(value)
    assert durations.median() == median and len(durations) == len(values)
