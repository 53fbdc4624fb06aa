"""A real ``server.py`` process with its stdout captured, and a scripted run of room traffic.

Used by tests/test_logs.py (acceptance: every line JSON, events with their
fields, no message text) and by tests/data/make_traffic_log.py, which froze
one run's stdout as tests/data/traffic.log for the report tests. The script
is deterministic in its counts; ``EXPECTED`` states them, and the report
tests check the frozen log against them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from tests.client import NOTICES, ChatClient
from tests.processes import ServerProcess

SECRET = "traffic-secret-at-least-32-bytes-long"
# Every message text carries this marker, so a test can prove no text reached the log.
TEXT_MARKER = "SECRET-TEXT-"
# Slow refill, small burst: the rate-limited count does not depend on timing.
SERVER_FLAGS = ["--rate-limit", "0.1", "--rate-burst", "4"]

# What drive_traffic does, room by room (resends are accepted but not counted as new).
EXPECTED: dict[str, dict[str, Any]] = {
    "lobby": {
        "accepted": 9,
        "resends": 1,
        "users": 3,
        "connections": 4,
        "disconnections": 4,
        "rejected": {"bad_json": 1, "bad_request": 1, "message_too_long": 1, "rate_limited": 2},
        "close_codes": {"1000": 2, "1001": 1, "1009": 1},
    },
    "café": {
        "accepted": 2,
        "resends": 0,
        "users": 2,
        "connections": 2,
        "disconnections": 2,
        "rejected": {},
        "close_codes": {"1001": 2},
    },
    "quiet": {
        "accepted": 0,
        "resends": 0,
        "users": 1,
        "connections": 1,
        "disconnections": 1,
        # Tornado's client sent a close frame without a status code: none is known.
        "rejected": {},
        "close_codes": {"none": 1},
    },
}


def traffic_server(log_dir: Path, node_id: str = "node-a", extra_flags: list[str] | None = None) -> ServerProcess:
    """The server the scripted traffic runs against (not started yet)."""
    flags = ["--node-id", node_id, "--log-format", "json", *SERVER_FLAGS, *(extra_flags or [])]
    return ServerProcess(flags, log_dir / f"{node_id}.log", env={"CHAT_COOKIE_SECRET": SECRET})


# ---- the scripted traffic --------------------------------------------------


def text(n: int) -> str:
    return f"{TEXT_MARKER}{n}"


async def say(client: ChatClient, body: str, client_id: str | None = None) -> dict[str, Any]:
    """Send a message and wait for its echo through the bus: then it is accepted and logged."""
    await client.say(body, client_id)
    while True:
        frame = await client.recv()
        if frame["type"] == "message" and frame["message"] == body:
            return frame


async def rejected(client: ChatClient, raw: str) -> str:
    """Send a raw frame the server refuses; the error code it answers."""
    client.send_raw(raw)
    return str((await client.recv_type("error", skip=NOTICES + ("message", "ack")))["error"])


async def resend(client: ChatClient, body: str, client_id: str) -> dict[str, Any]:
    await client.say(body, client_id)
    return await client.recv_type("ack", skip=NOTICES + ("message",))


async def close(client: ChatClient, code: int | None) -> int | None:
    if code is None:
        client.conn.close()  # a close frame without a status code
    else:
        client.conn.close(code, "bye")
    return await client.wait_closed()


async def connect(port: int, room: str, user: str | None, **kwargs: Any) -> ChatClient:
    return await ChatClient.connect(port, room, user=user, secret=SECRET, **kwargs)


async def lobby_traffic(port: int) -> ChatClient:
    """Messages, a resend, each kind of bad input, the rate limit, three ways to leave.

    Returns bob's second connection, which stays until SIGTERM closes it with 1001.
    """
    ann, bob, cy = [await connect(port, "lobby", name) for name in ("ann", "bob", "cy")]
    for n in range(3):
        await say(ann, text(n), client_id="a1" if n == 0 else None)
    await resend(ann, text(0), "a1")
    last = await say(bob, text(10))
    await say(bob, text(11))
    assert await rejected(bob, "not json " + TEXT_MARKER) == "bad_json"
    assert await rejected(bob, json.dumps({"message": ""})) == "bad_request"
    assert await rejected(bob, json.dumps({"message": TEXT_MARKER * 400})) == "message_too_long"
    await rate_limited_burst(cy, 6)
    assert await close(ann, 1000) == 1000
    assert await close(bob, 1000) == 1000
    bob_again = await connect(port, "lobby", "bob", since=last["id"])
    cy.send_raw("x" * (65 * 1024))  # over the 64 KiB frame limit
    assert await cy.wait_closed() == 1009
    return bob_again


async def rate_limited_burst(client: ChatClient, count: int) -> None:
    """``count`` messages at once on a burst of 4: 4 accepted, the rest rate_limited."""
    bodies = [text(20 + n) for n in range(count)]
    for body in bodies:
        await client.say(body)
    echoes, errors = 0, 0
    while echoes + errors < count:
        frame = await client.recv()
        if frame["type"] == "error":
            assert frame["error"] == "rate_limited", frame
            errors += 1
        elif frame["type"] == "message" and frame["message"] in bodies:
            echoes += 1
    assert (echoes, errors) == (4, count - 4)


async def cafe_traffic(port: int) -> list[ChatClient]:
    """A room with a non-ASCII name; both members stay until SIGTERM."""
    dan = await connect(port, "café", "dan")
    ann = await connect(port, "café", "ann")
    await say(dan, text(30))
    await say(ann, text(31))
    return [dan, ann]


async def quiet_traffic(port: int) -> None:
    """A guest (no cookie) who says nothing and leaves without a status code."""
    guest = await connect(port, "quiet", None)
    await close(guest, None)


async def http_traffic(port: int) -> list[int]:
    client = AsyncHTTPClient()
    codes = []
    for path in ("/chat/", "/healthz", "/readyz", "/metrics", "/chat/no%20such/", "/ws/chat/lobby/"):
        response = await client.fetch(
            f"http://127.0.0.1:{port}{path}", raise_error=False, follow_redirects=False, request_timeout=5
        )
        codes.append(response.code)
    return codes


async def drive_traffic(port: int) -> list[ChatClient]:
    """The whole script; returns the clients left open for SIGTERM to close."""
    staying = [await lobby_traffic(port)]
    staying += await cafe_traffic(port)
    await quiet_traffic(port)
    assert await http_traffic(port) == [200, 200, 200, 200, 404, 400]
    return staying
