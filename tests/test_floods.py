"""Joins and control frames priced like what they cost (README, "Limits"): join and room-create rates,
paced replays, coalesced presence notices, and pings charged like any frame.

Each flood is at a scale the server must refuse within a test's time: a
handshake flood, a new-room flood, a ``since=0-0`` replay of megabytes, a
churn of joins and leaves, a ping flood.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from bus.message import ZERO_ID
from bus.presence_batch import COALESCE_EVERY, SINGLE_FRAMES
from handlers.joins import LOGGED_BURST
from tests.client import TEST_SECRET, TIMEOUT, ChatClient, user_cookie
from tests.helpers import ON_MEMORY, eventually
from tests.raw_socket import PING, RawSocket, client_frame
from tests.tokens import TOKEN_SECRET, hs256, token_cookie

Frame = dict[str, Any]
EMOJI_TEXT = "\U0001f600" * 4096  # 4,096 code points, 16 KiB of UTF-8: the longest message


async def handshake(port: int, room: str, address: str, user: str | None = None) -> ChatClient | int:
    """The open client, or the refusal's status; ``address`` is the forwarded client address."""
    try:
        return await ChatClient.connect(port, room, user=user, headers={"X-Real-Ip": address}, join=False)
    except HTTPClientError as refused:
        return refused.code


async def metric(port: int, line: str) -> float:
    body = (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics", request_timeout=5)).body.decode()
    found = [row for row in body.splitlines() if row.startswith(line + " ")]
    assert found, f"{line} not in the metrics"
    return float(found[0].split()[-1])


# ---- joins ----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_join_flood_past_the_join_rate_gets_429_unlogged_and_other_addresses_join(make_server: Any) -> None:
    server = await make_server(join_rate=5, join_burst=10, behind_proxy=True)
    started = time.monotonic()
    with capture_logs() as logs:
        results = [await handshake(server.port, "lobby", "10.0.0.1") for _ in range(200)]
    elapsed = time.monotonic() - started
    opened = [result for result in results if isinstance(result, ChatClient)]
    refused = [result for result in results if not isinstance(result, ChatClient)]
    # The burst, plus what the rate gave back meanwhile; the audit's 711 joins a second all went in.
    assert 10 <= len(opened) <= 10 + 5 * elapsed + 1, (len(opened), elapsed)
    assert set(refused) == {429}
    assert await metric(server.port, 'chat_connections_refused_total{reason="join_rate"}') == len(refused)
    refusal_lines = [entry for entry in logs if entry["event"] == "ws.refused"]
    assert len(refusal_lines) <= LOGGED_BURST + elapsed + 1  # sampled, not one per refusal
    assert not [entry for entry in logs if entry["event"] == "http.request" and entry.get("status") == 429]
    other = await handshake(server.port, "lobby", "10.0.0.2")  # another address has its own budget
    assert isinstance(other, ChatClient)
    for client in opened + [other]:
        client.close()


@ON_MEMORY
@pytest.mark.gen_test(timeout=60)
async def test_in_token_mode_the_join_rate_is_each_users_behind_one_address(make_server: Any) -> None:
    server = await make_server(token_secret=TOKEN_SECRET, join_rate=0.01, join_burst=3)
    tokens = {user: hs256(user) for user in ("ann", "bob")}
    statuses: dict[str, list[int]] = {"ann": [], "bob": []}
    opened: list[ChatClient] = []
    for user in ("ann", "bob"):  # one address (127.0.0.1), two users of the host site
        for _ in range(5):
            try:
                opened.append(await ChatClient.connect(server.port, "office", headers=token_cookie(tokens[user])))
                statuses[user].append(101)
            except HTTPClientError as refused:
                statuses[user].append(refused.code)
    assert statuses == {"ann": [101, 101, 101, 429, 429], "bob": [101, 101, 101, 429, 429]}
    for client in opened:
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_room_create_flood_gets_429_and_existing_rooms_stay_open(make_server: Any) -> None:
    server = await make_server(room_create_rate=6, behind_proxy=True)
    keeper = await ChatClient.connect(server.port, "busy", user="keeper")  # a room with a member
    writer = await ChatClient.connect(server.port, "written", user="writer")  # a room with history only
    await writer.say("kept")
    await writer.messages(1)
    writer.close()

    async def written_is_empty() -> bool:
        return not server.bus.has_members_here("written")

    await eventually(written_is_empty, 10, "the writer left its room")
    results = [await handshake(server.port, f"new_{k}", "10.0.0.1") for k in range(40)]
    opened = [result for result in results if isinstance(result, ChatClient)]
    assert 6 <= len(opened) <= 7 and set(results[len(opened) :]) == {429}, results
    assert await metric(server.port, 'chat_connections_refused_total{reason="room_create_rate"}') == 40 - len(opened)
    # Rooms that exist cost no new-room budget: one with members, one with history and nobody in it.
    for room in ("busy", "written", "new_0"):
        joined = await handshake(server.port, room, "10.0.0.1")
        assert isinstance(joined, ChatClient), (room, joined)
        joined.close()
    assert isinstance(await handshake(server.port, "new_other", "10.0.0.2"), ChatClient)  # another address
    keeper.close()


# ---- replay -----------------------------------------------------------------------------


async def replay_arrivals(port: int, room: str) -> tuple[list[tuple[float, int]], "asyncio.Future[None]"]:
    """A ``since=0-0`` join; (arrival time, bytes) per frame, and a future resolved at ``ready``."""
    arrivals: list[tuple[float, int]] = []
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def received(frame: str | bytes | None) -> None:
        if frame is None:
            if not ready.done():
                ready.set_exception(ConnectionError("closed before ready"))
            return
        data = frame if isinstance(frame, bytes) else frame.encode()
        arrivals.append((time.monotonic(), len(data)))
        if b'"type":"ready"' in data.replace(b" ", b"") and not ready.done():
            ready.set_result(None)

    url = f"ws://127.0.0.1:{port}/ws/chat/{room}/?since={ZERO_ID}"
    request = HTTPRequest(url, headers={"Cookie": user_cookie(TEST_SECRET, "reader")}, request_timeout=TIMEOUT)
    await asyncio.wait_for(websocket_connect(request, on_message_callback=received), TIMEOUT)
    return arrivals, ready


@pytest.mark.gen_test(timeout=90)
async def test_a_replay_from_the_start_is_paced_over_every_connection_of_an_address(make_server: Any) -> None:
    rate = burst = 512 * 1024
    server = await make_server(rate_limit=0, replay_rate=rate, replay_burst=burst)
    sender = await ChatClient.connect(server.port, "archive", user="filler")
    for k in range(60):
        await sender.say(f"{k}{EMOJI_TEXT}"[:4096])
    await sender.messages(60, timeout=30)
    started = time.monotonic()
    readers = [await replay_arrivals(server.port, "archive") for _ in range(4)]
    await asyncio.wait_for(asyncio.gather(*(ready for _, ready in readers)), 60)
    arrivals = sorted(arrival for frames, _ in readers for arrival in frames)
    total = sum(size for _, size in arrivals)
    first_second = sum(size for at, size in arrivals if at - started < 1.0)
    largest = max(size for _, size in arrivals)
    assert total >= 4 * 60 * 16 * 1024  # every reader got the whole history (about 4 MB)
    # One burst and one second of the rate, shared by the four (a frame over each: reserved, then waited out).
    assert first_second <= burst + rate + 4 * largest, (first_second, total)
    sender.close()


# ---- presence -------------------------------------------------------------------------


def apply(view: set[str], frame: Frame) -> bool:
    """Apply a presence frame to a member's view of the room as the page does; False for other frames."""
    if frame["type"] == "presence":
        view.clear()
        view.update(member["user"] for member in frame["members"])
    elif frame["type"] == "join":
        view.add(frame["user"])
    elif frame["type"] == "leave":
        view.discard(frame["user"])
    else:
        return False
    return True


async def churn(port: int, room: str, cycles: int, concurrency: int) -> None:
    """Join and leave ``cycles`` times, a new user each time, ``concurrency`` at once."""
    counter = iter(range(cycles))

    async def worker() -> None:
        for k in counter:
            client = await ChatClient.connect(port, room, user=f"churner{k}")
            await client.recv_type("presence")  # fully in (live) before leaving
            client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@pytest.mark.gen_test(timeout=90)
async def test_join_and_leave_churn_reaches_members_coalesced_and_the_list_ends_right(make_server: Any) -> None:
    server = await make_server()
    watcher = await ChatClient.connect(server.port, "churned", user="watcher")
    view: set[str] = set()
    assert apply(view, await watcher.recv()) and view == {"watcher"}
    stayer = await ChatClient.connect(server.port, "churned", user="stayer")
    started = time.monotonic()
    await churn(server.port, "churned", cycles=300, concurrency=10)
    elapsed = time.monotonic() - started
    last = await ChatClient.connect(server.port, "churned", user="zed")  # the marker: the last change
    updates = 0
    deadline = time.monotonic() + 10
    while view != {"watcher", "stayer", "zed"}:
        assert time.monotonic() < deadline, view
        updates += apply(view, await watcher.recv(max(0.0, deadline - time.monotonic())))
    # 602 notices without coalescing (300 joins, 300 leaves, stayer and zed). With it: at most one
    # update per window, each at most SINGLE_FRAMES frames, or a frame that opens a window.
    windows = (time.monotonic() - started) / COALESCE_EVERY + 2
    assert updates <= windows * (SINGLE_FRAMES + 1), (updates, elapsed)
    assert updates < 602 / 4, (updates, elapsed)
    last.close()
    stayer.close()


# ---- pings ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_ping_flood_is_charged_and_closed_with_1008(make_server: Any) -> None:
    server = await make_server(client_rate_limit=1, client_rate_burst=5)
    flooder = await ChatClient.connect(server.port, "pings", user="pinger")
    for _ in range(3000):
        flooder.conn.ping(b"p")
    assert await flooder.wait_closed(timeout=20) == 1008  # before: all 3,000 answered, none refused
    assert await metric(server.port, 'chat_messages_rejected_total{reason="rate_limited"}') >= 1000
    # The pings spent the address's budget: a fresh connection's message is over the rate.
    again = await ChatClient.connect(server.port, "pings", user="pinger")
    await again.say("hello", client_id="c1")
    answer = await again.recv_type("error")
    assert answer["error"] == "rate_limited" and answer["client_id"] == "c1"
    again.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_pings_is_read_64_at_a_time_with_the_loop_turning_between(make_server: Any) -> None:
    server = await make_server(client_rate_limit=1, client_rate_burst=5)
    raw = await RawSocket.open(server.port, "pings")
    await raw.json("ready")

    def refused() -> float:
        found = server.metrics.registry.get_sample_value("chat_messages_rejected_total", {"reason": "rate_limited"})
        return found or 0.0

    # Each turn of the loop runs ``turn`` once (a callback scheduled during a
    # turn waits for the next), noting how many pings have been refused so far.
    seen: list[float] = []
    loop = asyncio.get_running_loop()
    watching = True

    def turn() -> None:
        seen.append(refused())
        if watching:
            loop.call_soon(turn)

    turn()
    await raw.send(client_frame(PING, b"") * 900)  # one write: read at once; under the refusal budget (1,000)

    async def all_refused() -> bool:
        return refused() >= 895  # the 5 of the burst are answered

    await eventually(all_refused, 20, "the pings charged")
    watching = False
    most = max(after - before for before, after in zip(seen, seen[1:]))
    assert 0 < most <= 64  # before: 256 in one turn (frames counted as 1 KiB against 256 KiB)
    raw.sock.close()
