"""Limits and lifetimes (docs/protocol.md, "Limits and timeouts"): each against a real server, on every bus backend.

The numbers are the hostile-client audit's where they fit in seconds: a history
of 1.6 MB, 300 handshakes from one address, a paused client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from config.settings import settings_from
from tests.client import ChatClient, ids
from tests.helpers import ON_MEMORY
from tests.raw_socket import open_paused

Frame = dict[str, Any]
EMOJI_TEXT = "\U0001f600" * 4096  # 4,096 code points, 16 KiB of UTF-8: the longest message


async def fill_room(port: int, room: str, count: int, text: str) -> list[Frame]:
    sender = await ChatClient.connect(port, room, user="filler")
    for k in range(count):
        await sender.say(f"{k}{text}"[:4096])
    sent = await sender.messages(count, timeout=30)
    sender.close()
    return sent


async def handshake_status(port: int, room: str = "r", headers: dict[str, str] | None = None) -> int:
    """101 for a WebSocket that opened (left open), else the refusal's status."""
    try:
        await ChatClient.connect(port, room, headers=headers, join=False)
    except HTTPClientError as refused:
        return refused.code
    return 101


# ---- ping ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_answers_no_ping_is_closed_and_leaves_the_room(make_server: Any) -> None:
    server = await make_server(ping_interval=0.5, ping_timeout=0.5)
    watcher = await ChatClient.connect(server.port, "ping", user="watcher")
    paused, _ = await open_paused(server.port, "ping", "paused")
    try:
        started = time.monotonic()
        seen: list[tuple[str, str]] = []
        while ("leave", "paused") not in seen:
            frame = await watcher.recv(timeout=10)
            if frame["type"] in ("join", "leave"):
                seen.append((frame["type"], frame["user"]))
        # interval + timeout + the fan-out; without pings it stayed 90 s and more
        assert time.monotonic() - started < 5
        await watcher.say("still here")  # the watcher, which answers pings, stays
        assert (await watcher.messages(1))[0]["message"] == "still here"
    finally:
        paused.close()


# ---- connection limits --------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_handshakes_beyond_the_per_client_and_per_process_limits_get_429_and_503(make_server: Any) -> None:
    server = await make_server(max_connections=150, max_connections_per_client=100, behind_proxy=True)
    one = {"X-Real-Ip": "10.0.0.1"}
    statuses = [await handshake_status(server.port, headers=one) for _ in range(300)]
    assert statuses.count(101) == 100 and statuses[100:] == [429] * 200  # the audit: 1,000 accepted
    other = [await handshake_status(server.port, headers={"X-Real-Ip": f"10.0.1.{n}"}) for n in range(60)]
    assert other.count(101) == 50 and other[50:] == [503] * 10
    http = AsyncHTTPClient()
    for path in ("/healthz", "/chat/", "/chat/room/"):  # pages and health checks do not count
        response = await http.fetch(f"http://127.0.0.1:{server.port}{path}", request_timeout=5)
        assert response.code == 200
    metrics = (await http.fetch(f"http://127.0.0.1:{server.port}/metrics", request_timeout=5)).body.decode()
    assert 'chat_connections_refused_total{reason="client_full"} 200.0' in metrics
    assert 'chat_connections_refused_total{reason="server_full"} 10.0' in metrics


@pytest.mark.gen_test(timeout=30)
async def test_a_closed_connection_gives_its_slot_back(make_server: Any) -> None:
    server = await make_server(max_connections_per_client=2)
    first = await ChatClient.connect(server.port, "slots")
    await ChatClient.connect(server.port, "slots")
    assert await handshake_status(server.port, "slots") == 429
    first.close()
    await first.wait_closed()
    deadline = time.monotonic() + 5
    while server.limits.connections.total != 1:  # the process's count drops as the socket's handler ends
        assert time.monotonic() < deadline, "the closed connection was never released"
        await asyncio.sleep(0.01)  # polling the server, bounded by the deadline
    # Released: the address's own share must be back at once, not after a wait.
    assert await handshake_status(server.port, "slots") == 101


# ---- room lifetime ------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@ON_MEMORY  # the Redis half of --room-ttl is the Redis bus's own
async def test_an_empty_room_older_than_the_ttl_is_freed_and_a_since_into_it_is_incomplete(make_server: Any) -> None:
    server = await make_server(room_ttl=0.3)
    sent = await fill_room(server.port, "brief", 3, "x")
    stays = await ChatClient.connect(server.port, "kept")
    await stays.say("kept while someone is here")
    await stays.messages(1)
    backend = server.bus.backend
    deadline = time.monotonic() + 10
    while backend.room_count() != 1:  # "brief" goes; "kept" has a member
        assert time.monotonic() < deadline, "the expired room was never freed"
        await asyncio.sleep(0.05)  # polling the backend, bounded by the deadline
    resumed = await ChatClient.connect(server.port, "brief", since=sent[-1]["id"])
    assert resumed.history == [] and resumed.ready is not None and resumed.ready["complete"] is False
    again = await ChatClient.connect(server.port, "kept")
    assert [f["message"] for f in again.history] == ["kept while someone is here"]


# ---- history 0 ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_history_0_replays_nothing_but_ready_carries_the_last_id(make_server: Any) -> None:
    assert settings_from({"history": "0"}, {}).history == 0  # the flag takes 0 (it refused it before)
    server = await make_server(history=0, rate_limit=0)
    sent = await fill_room(server.port, "none", 5, "m")
    joined = await ChatClient.connect(server.port, "none")
    assert joined.history == [] and joined.ready is not None and joined.ready["last_id"] == sent[-1]["id"]
    resumed = await ChatClient.connect(server.port, "none", since=sent[1]["id"])  # a resume still catches up
    assert ids(resumed.history) == ids(sent[2:])


# ---- replay and the slow-client bound ----------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_join_replaying_more_than_the_slow_client_bound_is_not_dropped(make_server: Any) -> None:
    """The audit: joins got 42 frames (1 MB) then 1008 "too slow" before ready; the page retried forever."""
    # 100 x 16 KiB = 1.6 MB > the 1 MiB bound (and the room keeps all of it: --history-bytes 8m)
    server = await make_server(history=100, rate_limit=0, history_bytes=8 << 20)
    sent = await fill_room(server.port, "big", 100, EMOJI_TEXT)
    joined = await ChatClient.connect(server.port, "big")
    assert ids(joined.history) == ids(sent) and joined.ready is not None
    resumed = await ChatClient.connect(server.port, "big", since=sent[0]["id"])
    assert ids(resumed.history) == ids(sent[1:])
    await resumed.say("live after a big replay")
    assert (await resumed.messages(1))[0]["message"] == "live after a big replay"


@pytest.mark.gen_test(timeout=60)
async def test_a_join_that_reads_nothing_of_a_large_replay_is_dropped_holding_no_more_than_the_bound(
    make_server: Any,
) -> None:
    """The replay goes at the reader's pace: one that never reads cannot make the server queue it all."""
    server = await make_server(  # a 5 s stall; the room keeps all 300 (--history-bytes 8m)
        history=300, rate_limit=0, ping_interval=5, ping_timeout=5, history_bytes=8 << 20
    )
    await fill_room(server.port, "hoard", 300, EMOJI_TEXT)  # 4.8 MB of history: more than the kernel buffers
    stuck, _ = await open_paused(server.port, "hoard", "hoarder", receive_buffer=4096)
    try:
        [socket_] = [s for s in server.registry.sockets if s.user == "hoarder"]
        most_queued = 0
        deadline = time.monotonic() + 30
        while socket_ in server.registry.sockets:
            most_queued = max(most_queued, socket_._unsent)
            assert time.monotonic() < deadline, "the client that reads nothing was never dropped"
            await asyncio.sleep(0.01)  # sampling the queue, bounded by the deadline
        assert most_queued <= server.settings.send_buffer_limit
        assert socket_._messages_out < 300, "the whole replay was queued for a client that reads nothing"
        reader = await ChatClient.connect(server.port, "hoard")  # the room is fine for everyone else
        assert len(reader.history) == 300
    finally:
        stuck.close()
