"""config/logging.py: Tornado's, asyncio's and our own errors as JSON lines, traceback once, as a field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from config.logging import _UtcStamp
from tests.log_probe import SECRET_LOCAL

ROOT = Path(__file__).resolve().parent.parent


def run_probe(log_format: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.log_probe", log_format], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def the_line(events: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    found = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def exception_type(event: dict[str, Any]) -> str:
    return str(event["exception"][0]["exc_type"])


def test_errors_of_every_logger_are_one_json_line_each_with_the_traceback_as_a_field() -> None:
    result = run_probe("json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all({"timestamp", "level", "event", "node"} <= set(e) for e in events)
    tornado_error = the_line(events, logger="tornado.application", level="error")
    assert exception_type(tornado_error) == "RuntimeError"
    assert any(frame["name"] == "get" for frame in tornado_error["exception"][0]["frames"])
    assert exception_type(the_line(events, logger="asyncio")) == "ValueError"
    ours = the_line(events, event="probe.failed")
    assert exception_type(ours) == "KeyError" and ours["conn"] == "probe:1"
    assert the_line(events, event="http.request")["status"] == 500
    # Once: only the exception field tells of it, as data rather than text.
    assert result.stdout.count("boom in a handler") == 1
    assert "Traceback" not in result.stdout


def test_tracebacks_leave_frame_locals_out() -> None:
    result = run_probe("json")
    assert result.returncode == 0, result.stderr
    exceptions = [exc for line in result.stdout.splitlines() for exc in json.loads(line).get("exception", [])]
    # The probe's three errors were logged, with the frame of the handler that holds the local...
    assert [exc["exc_type"] for exc in exceptions] == ["RuntimeError", "ValueError", "KeyError"], exceptions
    assert any(frame["name"] == "get" for frame in exceptions[0]["frames"])
    # ...and without the value of the local variable that frame held.
    assert SECRET_LOCAL not in result.stdout
    assert all("locals" not in frame for exc in exceptions for frame in exc["frames"])


def test_the_console_format_is_for_people() -> None:
    result = run_probe("console")
    assert result.returncode == 0
    assert not result.stdout.startswith("{")
    assert "Traceback (most recent call last)" in result.stdout and "RuntimeError: boom in a handler" in result.stdout


def test_timestamps_are_utc_iso_8601_with_microseconds_and_follow_the_clock() -> None:
    stamp = _UtcStamp()
    before = datetime.now(timezone.utc)
    stamps = [stamp(None, "info", {})["timestamp"] for _ in range(1000)]
    after = datetime.now(timezone.utc)
    for text in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    parsed = [datetime.fromisoformat(text) for text in stamps]
    slack = timedelta(milliseconds=1)  # the clocks round to the microsecond differently
    assert all(before - slack <= p <= after + slack for p in parsed)
    assert parsed == sorted(parsed)


HOT_LOG_PROBE = """
import io, json, sys
import structlog
from structlog.testing import capture_logs
from config import logging as chat_logging
from config.logging import HotLog, configure_logging

out = io.StringIO()
configure_logging("node-h", "json", out, sys.argv[1])
structlog.contextvars.bind_contextvars(conn="node-h:7", room="lobby", user="ana")
structlog.get_logger("chat.ws").info("message.accepted", msg_id="17-0", bytes=5, room="own")
HotLog("chat.ws").info("message.accepted", {"msg_id": "17-0", "bytes": 5, "room": "own"})
with capture_logs() as captured:
    HotLog("chat.ws").info("message.accepted", {"msg_id": "18-0", "bytes": 6})
direct = chat_logging._direct is not None and chat_logging._direct.in_force()
print(json.dumps({"lines": out.getvalue().splitlines(), "captured": captured, "direct": direct}))
"""


def run_hot_log_probe(level: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", HOT_LOG_PROBE, level], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_per_message_line_is_the_line_structlog_writes_and_still_captured_in_tests() -> None:
    probe = run_hot_log_probe("info")
    assert probe["direct"]  # the JSON pipeline is in force: the line did not go through structlog's logger
    through_structlog, direct = (json.loads(line) for line in probe["lines"])
    assert through_structlog.pop("timestamp") and direct.pop("timestamp")
    assert direct == through_structlog
    assert list(direct) == list(through_structlog)  # the same fields in the same order
    assert direct["room"] == "own" and direct["conn"] == "node-h:7"  # the event's field wins over the context's
    assert [entry["msg_id"] for entry in probe["captured"]] == ["18-0"]  # capture_logs swaps the pipeline


def test_the_per_message_line_follows_the_configured_level() -> None:
    probe = run_hot_log_probe("warning")
    assert probe["lines"] == []
