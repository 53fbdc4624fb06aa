"""Every outbound frame's exact shape (bus/frames.py), the clean-up of message text, and the outage tracker's lines.

Exact, so that a changed key, value or type is caught here in milliseconds
rather than by a browser or a socket test.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Callable

import pytest
from structlog.testing import capture_logs

import bus.redis.health as health_module
from bus import frames
from bus.redis.health import PRESENCE, Health
from handlers.identity import USER_COOKIE, USER_COOKIE_DAYS, cookie_user
from handlers.inbound import ChatRequest, FrameError, parse_frame


def test_the_message_frame_and_its_replay() -> None:
    live = json.loads(frames.message("5-1", "r", "ann", "hi", 5))
    assert live == {"type": "message", "id": "5-1", "room": "r", "user": "ann", "message": "hi", "ts": 5}
    assert json.loads(frames.message("5-1", "r", "ann", "hi", 5, replay=True)) == {**live, "replay": True}
    assert "replay" not in live


@pytest.mark.parametrize("last_id,complete", [("7-0", True), (None, False)])
def test_the_ready_frame(last_id: str | None, complete: bool) -> None:
    assert json.loads(frames.ready("café", "zoë", last_id, complete)) == {
        "type": "ready",
        "room": "café",
        "user": "zoë",
        "last_id": last_id,
        "complete": complete,
    }


def test_the_ack_frame() -> None:
    assert json.loads(frames.ack("c-1", "9-3")) == {"type": "ack", "client_id": "c-1", "id": "9-3"}


def test_the_error_frame_with_and_without_a_client_id() -> None:
    assert json.loads(frames.error("bad_json", "nope")) == {"type": "error", "error": "bad_json", "detail": "nope"}
    with_id = json.loads(frames.error("rate_limited", "slow", "c"))
    assert with_id == {"type": "error", "error": "rate_limited", "detail": "slow", "client_id": "c"}


def test_presence_and_notice_frames() -> None:
    assert json.loads(frames.presence([("ann", 2), ("bob", 1)])) == {
        "type": "presence",
        "members": [{"user": "ann", "connections": 2}, {"user": "bob", "connections": 1}],
    }
    assert json.loads(frames.presence([])) == {"type": "presence", "members": []}
    assert json.loads(frames.notice("leave", "ann")) == {"type": "leave", "user": "ann"}


@pytest.mark.parametrize(
    "make",
    [
        lambda: frames.notice("join", "ann"),
        lambda: frames.presence([("ann", 2), ("bob", 1)]),
        lambda: frames.message("5-1", "r", "ann", "hi", 5),
        lambda: frames.ready("r", "ann", None, True),
        lambda: frames.ack("c-1", "9-3"),
        lambda: frames.error("unavailable", "try again"),
    ],
    ids=["notice", "presence", "message", "ready", "ack", "error"],
)
def test_a_frame_holds_about_its_own_length_in_memory(make: Callable[[], bytes]) -> None:
    # orjson's bytes take at least 4 KiB whatever their length; a frame kept
    # while seats join (a burst of thousands) must cost what it says.
    tracemalloc.start()
    try:
        frame = make()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < len(frame) + 256, (held, len(frame))


@pytest.mark.parametrize(
    "text,kept",
    [
        ("a\x00b\x1fc\x7fd\x9fe", "abcde"),  # C0 and C1 controls
        ("line one\nline two\tend", "line one\nline two\tend"),  # newline and tab stay
        ("\u202eevil\u202c", "evil"),  # bidi overrides
        ("\u2066iso\u2069", "iso"),  # bidi isolates
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("\u200e\u200f\u061c\u2060x", "x"),  # marks and the word joiner
        ("👩\u200d💻 and ی\u200cی", "👩\u200d💻 and ی\u200cی"),  # joiners that emoji and Persian need stay
        ("\xa0space", "\xa0space"),  # the first code point past the C1 range stays
    ],
)
def test_invisible_and_control_characters_are_stripped_from_messages(text: str, kept: str) -> None:
    assert parse_frame(json.dumps({"message": text}), 4096) == ChatRequest(kept, None)


def test_a_message_of_only_invisible_characters_is_refused_with_its_client_id() -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps({"message": "\u200b\u202e\x01", "client_id": "c9"}), 4096)
    assert (refused.value.code, refused.value.detail, refused.value.client_id) == (
        "bad_request",
        '"message" must hold visible text',
        "c9",
    )


def test_the_length_limit_counts_the_text_as_sent() -> None:
    assert parse_frame(json.dumps({"message": "x" * 5}), 5) == ChatRequest("x" * 5, None)
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps({"message": "x" * 6, "client_id": "c"}), 5)
    assert (refused.value.code, refused.value.detail, refused.value.client_id) == (
        "message_too_long",
        "a message holds at most 5 characters",
        "c",
    )


class CookieHandler:
    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw
        self.asked: list[tuple[str, float]] = []

    def get_signed_cookie(self, name: str, max_age_days: float = 31) -> bytes | None:
        self.asked.append((name, max_age_days))
        return self.raw


def test_the_name_cookie_is_read_for_as_long_as_it_lives() -> None:
    handler = CookieHandler("ann".encode())
    assert cookie_user(handler) == "ann"  # type: ignore[arg-type]
    assert handler.asked == [(USER_COOKIE, USER_COOKIE_DAYS)] and USER_COOKIE_DAYS == 365


def test_health_lines_carry_the_reason_and_the_outage_length() -> None:
    health = Health()
    health.ok("a:1")
    with capture_logs() as logs:
        health.failed("a:1", "ConnectionError: refused")
        health.failed(PRESENCE, "WRONGTYPE")
        health.ok("a:1")
        health.ok(PRESENCE)
    error, presence_error, recovered, presence_recovered = logs
    assert (error["event"], error["reason"], error["log_level"]) == ("bus.error", "ConnectionError: refused", "error")
    assert (presence_error["event"], presence_error["reason"], presence_error["log_level"]) == (
        "presence.error",
        "WRONGTYPE",
        "warning",
    )
    assert recovered["event"] == "bus.recovered" and recovered["log_level"] == "info"
    assert isinstance(recovered["duration_ms"], int) and 0 <= recovered["duration_ms"] < 5000
    assert presence_recovered == {"event": "presence.recovered", "log_level": "info"}


def test_only_failing_shards_are_listed_as_failing_parts() -> None:
    health = Health()
    assert health.failing_parts() == []  # "not connected yet" is not a shard
    health.failed("a:1", "down")
    health.failed(PRESENCE, "down")
    health.failed("b:2", "down")
    assert health.failing_parts() == ["a:1", "b:2"]


def test_every_outage_is_logged_and_counted_with_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(health_module.time, "monotonic", lambda: clock[0])
    health = Health()
    health.ok("a:1")
    with capture_logs() as logs:
        for down_for in (2.5, 0.25):
            health.failed("a:1", "down")
            clock[0] += down_for
            health.ok("a:1")
    assert [(entry["event"], entry.get("duration_ms")) for entry in logs] == [
        ("bus.error", None),
        ("bus.recovered", 2500),
        ("bus.error", None),
        ("bus.recovered", 250),
    ]
    assert health.recoveries == 2
