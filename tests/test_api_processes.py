"""The server API across real ``server.py`` processes on one Redis: order, idempotency, disconnects, bans, mutes.

Also the Python client (clients/chat_api_client.py) against a real process,
and bans surviving a restart of every process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from clients.chat_api_client import ChatApi, ChatApiError
from tests.api_kit import API_KEY, OTHER_KEY, call
from tests.client import TEST_SECRET, ChatClient, ids, strictly_increasing
from tests.processes import ApiProcesses, ServerProcess

ApiProcess = tuple[ServerProcess, int]  # the process and its API port
Start = Callable[..., Awaitable[ApiProcess]]


@pytest.fixture
def start_api(tmp_path: Path, redis_db: str) -> Any:
    """Start ``server.py`` processes with the API on, sharing the test's Redis; killed after the test."""
    processes = ApiProcesses(tmp_path, {"CHAT_COOKIE_SECRET": TEST_SECRET, "CHAT_API_KEYS": f"{API_KEY},{OTHER_KEY}"})

    async def start(node: str, *extra: str) -> ApiProcess:
        args = ["--redis-url", redis_db, "--node-id", node, "--rate-limit", "0", "--log-format", "json"]
        return await processes.start(args, extra, node)

    yield start
    processes.kill_all()


async def admitted(port: int, room: str, user: str) -> bool:
    """Whether a join gets its ready frame (a refused one is closed before)."""
    try:
        client = await ChatClient.connect(port, room, user=user)
    except ConnectionError:
        return False
    client.close()
    return True


@pytest.mark.gen_test(timeout=90)
async def test_publish_through_a_is_seen_on_b_in_room_order(start_api: Start) -> None:
    (a, api_a), (b, _) = await start_api("node-a"), await start_api("node-b")
    members = [await ChatClient.connect(b.port, "order", user=u) for u in ("ann", "bob")]
    speaker = await ChatClient.connect(a.port, "order", user="cat")
    posted = []
    for k in range(20):  # API publishes through A interleaved with a member's messages through A
        await speaker.say(f"ws{k}")
        status, body = await call(api_a, "POST", "/api/rooms/order/messages", {"text": f"api{k}"})
        assert status == 201
        posted.append(body["id"])
    seen = [await member.messages(40) for member in members]
    assert ids(seen[0]) == ids(seen[1]) and strictly_increasing(ids(seen[0]))
    assert [f["id"] for f in seen[0] if f["message"].startswith("api")] == posted
    status, page = await call(api_a, "GET", "/api/rooms/order/messages?limit=100")
    assert ids(page["messages"]) == ids(seen[0])
    status, body = await call(api_a, "GET", "/api/rooms/order/members")
    assert [m["user"] for m in body["members"]] == ["ann", "bob", "cat"]  # on both processes
    status, body = await call(api_a, "GET", "/api/rooms")
    assert body == {"rooms": [{"room": "order", "members": 3}], "next": None}


@pytest.mark.gen_test(timeout=90)
async def test_idempotency_through_two_processes_at_once_is_one_message(start_api: Start) -> None:
    (_, api_a), (b, api_b) = await start_api("node-a"), await start_api("node-b")
    watcher = await ChatClient.connect(b.port, "idem", user="ann")
    for round_ in range(5):
        body = {"text": f"shipped {round_}", "idempotency_key": f"order-{round_}"}
        answers = await asyncio.gather(
            *(call(port, "POST", "/api/rooms/idem/messages", body) for port in [api_a, api_b] * 4)
        )
        assert {status for status, _ in answers} == {201}
        assert len({answer["id"] for _, answer in answers}) == 1
        assert sum(not answer["duplicate"] for _, answer in answers) == 1
    status, page = await call(api_b, "GET", "/api/rooms/idem/messages")
    assert [m["message"] for m in page["messages"]] == [f"shipped {k}" for k in range(5)]
    await call(api_a, "POST", "/api/rooms/idem/messages", {"text": "marker"})
    frames = await watcher.messages(6)
    assert [f["message"] for f in frames] == [f"shipped {k}" for k in range(5)] + ["marker"]


@pytest.mark.gen_test(timeout=90)
async def test_disconnect_closes_every_tab_on_every_process_within_a_second_and_the_ban_holds(start_api: Start) -> None:
    (a, api_a), (b, _) = await start_api("node-a"), await start_api("node-b")
    tabs = [
        await ChatClient.connect(b.port, "hall", user="troll"),
        await ChatClient.connect(b.port, "hall", user="troll"),
        await ChatClient.connect(a.port, "hall", user="troll"),
    ]
    bystander = await ChatClient.connect(b.port, "hall", user="kind")
    ban_seconds = 3
    started = time.monotonic()
    status, body = await call(
        api_a, "POST", "/api/users/troll/disconnect", {"room": "hall", "ban_seconds": ban_seconds}
    )
    assert status == 200
    codes = await asyncio.gather(*(tab.wait_closed(timeout=2.0) for tab in tabs))
    took = time.monotonic() - started
    assert codes == [4003, 4003, 4003] and took < 1.0, (codes, took)
    # Refused on both processes while the ban lasts; the others carry on.
    for port in (a.port, b.port):
        refused = await ChatClient.connect(port, "hall", user="troll", join=False)
        assert await refused.wait_closed() == 4003
    await bystander.say("still fine")
    assert (await bystander.recv_chat())["message"] == "still fine"
    ends = body["ban"]["until"] / 1000
    while not await admitted(b.port, "hall", "troll"):  # polling joins, bounded by the ban's length
        assert time.time() < ends + 2, "still refused well after the ban ended"
        await asyncio.sleep(0.2)
    assert time.time() >= ends - 0.1  # not before it ended


@pytest.mark.gen_test(timeout=90)
async def test_mute_on_one_process_refuses_sends_on_another_and_allows_reads(start_api: Start) -> None:
    (_, api_a), (b, _) = await start_api("node-a"), await start_api("node-b")
    eve = await ChatClient.connect(b.port, "calm", user="eve")
    status, _ = await call(api_a, "POST", "/api/rooms/calm/mutes", {"user": "eve", "seconds": 60})
    assert status == 201
    deadline = time.monotonic() + 1.0
    await eve.say("hello?", client_id="m1")
    error = await eve.recv_type("error")
    assert error["error"] == "muted" and time.monotonic() < deadline
    await call(api_a, "POST", "/api/rooms/calm/messages", {"text": "read this"})
    assert (await eve.recv_chat())["message"] == "read this"
    status, _ = await call(api_a, "DELETE", "/api/rooms/calm/mutes/eve")
    assert status == 200  # B hears the lift through the event stream, a round trip later: send until it has
    for attempt in range(50):
        await eve.say(f"back {attempt}")
        frame = await eve.recv_type("message", skip=("presence", "join", "leave", "typing", "error"))
        if frame["message"] == f"back {attempt}":
            break
    else:
        raise AssertionError("still muted after the lift")


@pytest.mark.gen_test(timeout=90)
async def test_bans_survive_a_restart_of_every_process(start_api: Start) -> None:
    (a, api_a) = await start_api("node-a")
    status, _ = await call(api_a, "POST", "/api/users/rex/disconnect", {"ban_seconds": 600})
    assert status == 200
    status, _ = await call(api_a, "POST", "/api/rooms/r1/mutes", {"user": "rex", "seconds": 600})
    await a.restart()
    status, body = await call(api_a, "GET", "/api/bans")
    assert [b["user"] for b in body["bans"]] == ["rex"]
    status, body = await call(api_a, "GET", "/api/rooms/r1/mutes")
    assert [m["user"] for m in body["mutes"]] == ["rex"]
    refused = await ChatClient.connect(a.port, "r1", user="rex", join=False)
    assert await refused.wait_closed() == 4003


@pytest.mark.gen_test(timeout=90)
async def test_python_client_publishes_reads_and_moderates(start_api: Start) -> None:
    process, api_port = await start_api("node-c")
    chat = ChatApi(f"http://127.0.0.1:{api_port}", key=OTHER_KEY)  # the second key: rotation
    member = await ChatClient.connect(process.port, "shop", user="buyer")
    first = await asyncio.to_thread(chat.publish, "shop", "Order 1234 has shipped")
    assert (await member.recv_chat())["id"] == first
    again = await asyncio.to_thread(chat.publish, "shop", "same", idempotency_key="x1")
    assert await asyncio.to_thread(chat.publish, "shop", "same", idempotency_key="x1") == again
    page = await asyncio.to_thread(chat.history, "shop", limit=10)
    assert ids(page["messages"]) == [first, again]
    assert [m["user"] for m in await asyncio.to_thread(chat.members, "shop")] == ["buyer"]
    await asyncio.to_thread(chat.delete, "shop", first)
    assert (await member.recv_type("deleted", skip=("presence", "message")))["id"] == first
    await asyncio.to_thread(chat.mute, "shop", "buyer", 30)
    assert [m["user"] for m in await asyncio.to_thread(chat.mutes, "shop")] == ["buyer"]
    await asyncio.to_thread(chat.unmute, "shop", "buyer")
    await asyncio.to_thread(chat.disconnect, "buyer", "shop", 30)
    assert await member.wait_closed() == 4003
    assert [b["user"] for b in await asyncio.to_thread(chat.bans, "shop")] == ["buyer"]
    await asyncio.to_thread(chat.unban, "buyer", "shop")
    with pytest.raises(ChatApiError) as refused:
        await asyncio.to_thread(chat.publish, "no-such-room!", "x")
    assert (refused.value.status, refused.value.code) == (400, "bad_room")
    wrong = ChatApi(f"http://127.0.0.1:{api_port}", key="not-the-key")
    with pytest.raises(ChatApiError) as refused:
        await asyncio.to_thread(wrong.history, "shop")
    assert refused.value.status == 401 and "not-the-key" not in repr(wrong)
