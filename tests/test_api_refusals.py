"""The server API's refusals on a real ``server.py``: keys, room names, bodies; none changes anything.

Also what the API leaves behind: one ``api.request`` log line per request
with the key's id (never the key), counts in /metrics by route and status,
and a request budget per key.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from api.base import MAX_BODY_BYTES
from api.keys import key_id
from tests.api_kit import API_KEY, OTHER_KEY, call
from tests.client import TEST_SECRET, ChatClient
from tests.helpers import eventually, fetch
from tests.processes import ApiProcesses, ServerProcess

WRITES = [
    ("POST", "/api/rooms/{room}/messages", {"text": "x"}),
    ("POST", "/api/users/ann/disconnect", {"room": "{room}", "ban_seconds": 60}),
    ("POST", "/api/rooms/{room}/mutes", {"user": "ann", "seconds": 60}),
    ("DELETE", "/api/rooms/{room}/messages/{id}", None),
    ("DELETE", "/api/rooms/{room}/mutes/ann", None),
    ("DELETE", "/api/bans/ann", None),
]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Awaitable[tuple[ServerProcess, int]]]]:
    """Start ``server.py`` on the in-process bus with the API on; killed after the test."""
    processes = ApiProcesses(tmp_path, {"CHAT_COOKIE_SECRET": TEST_SECRET, "CHAT_API_KEYS": f"{API_KEY},{OTHER_KEY}"})

    async def run(*extra: str) -> tuple[ServerProcess, int]:
        return await processes.start(["--log-format", "json"], extra, f"api-{len(processes.processes)}")

    yield run
    processes.kill_all()


Start = Callable[..., Awaitable[tuple[ServerProcess, int]]]


def fill(template: Any, room: str, message_id: str) -> Any:
    return json.loads(json.dumps(template).replace("{room}", room).replace("{id}", message_id))


async def state(api_port: int, room: str) -> Any:
    """Everything a refused request could have changed."""
    answers = [
        await call(api_port, "GET", f"/api/rooms/{room}/messages?limit=1000"),
        await call(api_port, "GET", f"/api/rooms/{room}/mutes"),
        await call(api_port, "GET", f"/api/rooms/{room}/bans"),
        await call(api_port, "GET", "/api/bans"),
    ]
    return answers


@pytest.mark.gen_test(timeout=90)
async def test_refusals_answer_as_the_contract_says_and_change_nothing(start: Start) -> None:
    process, api_port = await start("--api-rate-limit", "0")
    ann = await ChatClient.connect(process.port, "safe", user="ann")
    await ann.say("the one message")
    kept = (await ann.messages(1))[0]["id"]
    before = await state(api_port, "safe")
    big = b'{"text": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for method, template, body in WRITES:
        path = fill(template, "safe", kept)
        payload = fill(body, "safe", kept)
        for key in (None, "wrong-key-" + "x" * 30, API_KEY[:-1] + "!"):
            status, answer = await call(api_port, method, path, payload, key=key)
            assert (status, answer["error"]) == (401, "unauthorized"), (method, path, key)
        status, answer = await call(
            api_port, method, path, payload, headers={"Authorization": f"Basic {API_KEY}"}, key=None
        )
        assert status == 401
        if "{room}" in json.dumps([template, body]):  # in the path, or (disconnect) in the body
            bad_room = fill(template, "no-such room", kept).replace(" ", "%20")
            status, answer = await call(api_port, method, bad_room, fill(body, "no-such room", kept))
            assert (status, answer["error"]) == (400, "bad_room"), (method, bad_room)
        if method == "POST":
            status, answer = await call(api_port, method, path, raw=big)
            assert (status, answer["error"]) == (413, "too_large"), (method, path)
            for not_an_object in (b"[1]", b'"text"', b"1", b"null", b"true"):
                status, answer = await call(api_port, method, path, raw=not_an_object)
                assert (status, answer["error"]) == (400, "bad_request"), (method, path, not_an_object)
            status, answer = await call(api_port, method, path, raw=b'{"text": ')
            assert (status, answer["error"]) == (400, "bad_json")
    assert await state(api_port, "safe") == before
    await ann.say("marker")  # nothing reached the member before it, and it was not closed
    frame = await ann.recv_chat()
    assert frame["message"] == "marker", frame
    status, answer = await call(api_port, "POST", "/api/rooms/safe/messages", raw=b"x" * (MAX_BODY_BYTES + 1), key=None)
    assert status == 401  # the key is checked before the body is looked at


@pytest.mark.gen_test(timeout=120)
async def test_a_wrong_key_takes_as_long_as_a_right_one(start: Start) -> None:
    """Medians of many requests: a near miss (all but the last character), a far miss and the right key."""
    _, api_port = await start("--api-rate-limit", "0")
    keys = {"right": API_KEY, "near": API_KEY[:-1] + "#", "far": "#" * len(API_KEY)}
    times: dict[str, list[float]] = {name: [] for name in keys}
    for _ in range(150):
        for name, key in keys.items():  # interleaved: the machine's noise falls on all three alike
            started = time.perf_counter()
            status, _ = await call(api_port, "GET", "/api/rooms/bad-name/members", key=key)
            times[name].append(time.perf_counter() - started)
            assert status == (400 if name == "right" else 401)
    medians = {name: statistics.median(values) for name, values in times.items()}
    # Generous: within 30% of each other and 0.5 ms (a per-character comparison would not show at all
    # over HTTP; a check that stopped early on the hash or skipped keys would still be far below this).
    low, high = min(medians.values()), max(medians.values())
    assert high - low < max(0.3 * low, 0.0005), medians


@pytest.mark.gen_test(timeout=60)
async def test_api_requests_are_logged_with_the_key_id_and_counted(start: Start) -> None:
    process, api_port = await start("--api-rate-limit", "0")
    await call(api_port, "POST", "/api/rooms/logged/messages", {"text": "counted"})
    await call(api_port, "POST", "/api/rooms/logged/messages", {"text": "counted"}, key=OTHER_KEY)
    await call(api_port, "GET", "/api/rooms/logged/messages", key="wrong")

    async def three_lines() -> bool:
        return len(process.events("api.request")) >= 3

    await eventually(three_lines, 5, "three api.request lines")
    lines = process.events("api.request")
    assert [(e["route"], e["status"], e["key"]) for e in lines] == [
        ("/api/rooms/{room}/messages", 201, key_id(API_KEY)),
        ("/api/rooms/{room}/messages", 201, key_id(OTHER_KEY)),
        ("/api/rooms/{room}/messages", 401, None),
    ]
    assert all(isinstance(e["duration_ms"], float) and e["method"] in ("GET", "POST") for e in lines)
    log_text = process.log_path.read_text() + process.stderr().decode()
    assert API_KEY not in log_text and OTHER_KEY not in log_text and "counted" not in log_text
    metrics = (await fetch(process.port, "/metrics")).body.decode()
    assert 'chat_api_requests_total{route="/api/rooms/{room}/messages",status="201"} 2.0' in metrics
    assert 'chat_api_requests_total{route="/api/rooms/{room}/messages",status="401"} 1.0' in metrics


@pytest.mark.gen_test(timeout=60)
async def test_each_key_has_its_own_request_budget(start: Start) -> None:
    _, api_port = await start("--api-rate-limit", "1", "--api-rate-burst", "5")
    if True:
        statuses = [(await call(api_port, "GET", "/api/rooms"))[0] for _ in range(8)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        status, body = await call(api_port, "GET", "/api/rooms")
        assert (status, body["error"]) == (429, "rate_limited")
        status, _ = await call(api_port, "GET", "/api/rooms", key=OTHER_KEY)
        assert status == 200  # the other key's budget is its own
