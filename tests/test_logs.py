"""The logs (README, "Logs"), from a real ``server.py`` process: JSON lines, event fields, no message text."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ops.report_model import TrafficReport
from tests.client import NOTICES, ChatClient
from tests.traffic import EXPECTED, TEXT_MARKER, drive_traffic, traffic_server

# Fields each room traffic event carries (conn, room, user come from the
# context bound once in open(), not from each call).
CONNECTION = {"conn", "room", "user"}
FIELDS = {
    "ws.connect": CONNECTION | {"client"},
    "ws.disconnect": CONNECTION | {"code", "duration_ms", "messages_in", "messages_out"},
    "message.accepted": CONNECTION | {"msg_id", "bytes"},
    "message.rejected": CONNECTION | {"reason"},
    "http.request": {"method", "path", "status", "duration_ms", "client"},
}


def assert_line_shape(event: dict[str, Any]) -> None:
    assert {"timestamp", "level", "event", "node"} <= set(event), event
    assert event["node"] == "node-a"
    stamp = datetime.fromisoformat(event["timestamp"])
    assert event["timestamp"].endswith("Z") and stamp.utcoffset() == timezone.utc.utcoffset(None)


def assert_one_context_per_connection(events: list[dict[str, Any]]) -> None:
    """Every line of a connection carries the room and user its ws.connect did: no context leaks."""
    opened = {e["conn"]: (e["room"], e["user"]) for e in events if e["event"] == "ws.connect"}
    with_conn = [e for e in events if "conn" in e]
    assert {e["event"] for e in with_conn} == {"ws.connect", "ws.disconnect", "message.accepted", "message.rejected"}
    for event in with_conn:
        assert (event["room"], event["user"]) == opened[event["conn"]], event


@pytest.mark.gen_test(timeout=30)
async def test_a_run_with_traffic_logs_json_lines_with_the_section_6_fields(tmp_path: Path) -> None:
    server = await traffic_server(tmp_path).start()
    try:
        staying = await drive_traffic(server.port)
    finally:
        status = await server.stop()
    assert status == 0 and server.stderr() == b""
    assert [await client.wait_closed() for client in staying] == [1001, 1001, 1001]
    events = server.events()  # raises if any line is not JSON
    for event in events:
        assert_line_shape(event)
    for name, fields in FIELDS.items():
        of_kind = [e for e in events if e["event"] == name]
        assert of_kind, name
        for event in of_kind:
            assert fields <= set(event), event
    assert_one_context_per_connection(events)
    assert not any(TEXT_MARKER in line for line in server.lines())
    assert not any("text" in e for e in events if e["event"] == "message.accepted")


@pytest.mark.gen_test(timeout=30)
async def test_a_fresh_run_reports_the_same_counts_as_the_frozen_log(tmp_path: Path) -> None:
    server = await traffic_server(tmp_path).start()
    try:
        await drive_traffic(server.port)
    finally:
        await server.stop()
    report = TrafficReport().feed_all(server.lines()).as_dict()
    for name, expected in EXPECTED.items():
        room = report["rooms"][name]
        assert {key: room[key] for key in expected} == expected, name
    assert report["lines"]["not_json"] == 0


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("log_text", [False, True])
async def test_message_text_is_logged_only_when_configured(make_server: Any, log_text: bool) -> None:
    server = await make_server(log_message_text=log_text)
    client = await ChatClient.connect(server.port, "room", user="ann")
    with capture_logs() as logs:
        await client.say("hello there", client_id="c1")
        # The ack follows the log line; the echo may overtake it on the Redis bus.
        await client.recv_type("ack", skip=NOTICES + ("message",))
    accepted = [e for e in logs if e["event"] == "message.accepted"]
    assert len(accepted) == 1
    assert accepted[0].get("text") == ("hello there" if log_text else None)


@pytest.mark.gen_test(timeout=20)
async def test_fan_out_logs_nothing_per_recipient(make_server: Any) -> None:
    server = await make_server()
    clients = [await ChatClient.connect(server.port, "room", user=f"u{n}") for n in range(5)]
    with capture_logs() as logs:
        await clients[0].say("one line for five readers", client_id="c1")
        await clients[0].recv_type("ack", skip=NOTICES + ("message",))
        for client in clients[1:]:
            await client.messages(1)
    # The Redis bus may log its own housekeeping meanwhile; nothing else may appear.
    assert [e["event"] for e in logs if not e["event"].startswith("bus.")] == ["message.accepted"]


@pytest.mark.gen_test(timeout=30)
async def test_forwarded_for_is_logged_only_behind_a_proxy(tmp_path: Path) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    for flags, expected in (([], "127.0.0.1"), (["--behind-proxy"], "203.0.113.9")):
        server = await traffic_server(tmp_path, f"n{len(flags)}", flags).start()
        try:
            client = await ChatClient.connect(server.port, "room", headers=spoof)
            client.close()
        finally:
            await server.stop()
        [connect] = [e for e in server.events() if e["event"] == "ws.connect"]
        assert connect["client"] == expected
