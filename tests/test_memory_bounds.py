"""Memory no client can grow without bound (README, "Memory"): --history-bytes on both buses,
--memory-budget on the in-process bus, and a full Redis refusing with ``unavailable``.

The growth attack is the second audit's (tests/growth_attack.py): connections from
one address sending 16 KB messages and moving to a new room every 64. Here the
per-user rate limit is off, so a few seconds carry what the audit's 20 messages a
second carried in a minute: the in-process run stops once it sent more text than
the RSS bound (about 6 s alone on two cores), the Redis run once 60 messages were
refused, each within GROWTH_LIMIT seconds (60). The 60 s run at the audit's rate
is bench/memory_growth.py's (bench/results/issue-25-memory.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, cast

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient

from bus.backend import Backend
from bus.memory import MemoryBackend
from bus.message import ChangeDraft, Draft, Message, id_key
from bus.redis import RedisBroker, RedisOptions
from bus.redis.keys import Keys
from tests.client import NOTICES, TEST_SECRET, ChatClient, ids
from tests.growth_attack import TEXT, Attack, rss_bytes, send
from tests.processes import ServerProcess
from tests.services import RedisServer

GROWTH_LIMIT = float(os.environ.get("GROWTH_LIMIT", "60"))
MiB = 1 << 20


# ---- --history-bytes: the same behaviour on both buses ----------------------------------------


@pytest.fixture(params=["memory", "redis"])
def bounded_bus(request: pytest.FixtureRequest, io_loop: Any) -> Iterator[Backend]:
    """A bus (not started) whose rooms keep at most 100 bytes of text (and 1000 messages)."""
    backend: Backend
    if request.param == "memory":
        backend = MemoryBackend(1000, 600.0, history_bytes=100)
    else:
        url = request.getfixturevalue("redis_db")
        backend = RedisBroker(RedisOptions(url=url, node_id="bytes", history_bytes=100))
    yield backend
    io_loop.run_sync(backend.close, timeout=10)


async def started(bus: Backend) -> Backend:
    await bus.start(lambda entries: None, lambda notice: None)
    return bus


def entries(client: redis.Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    """A stream's entries, read behind the server's back (a client made with decode_responses)."""
    return cast(list[tuple[str, dict[str, str]]], client.xrange(key))


async def texts(bus: Backend, room: str) -> list[str]:
    history = await bus.history(room, None, 100)
    return [m.text for m in history.messages if isinstance(m, Message)]


@pytest.mark.gen_test(timeout=30)
async def test_a_room_keeps_at_most_history_bytes_of_text_counted_in_utf8_the_newest_always(
    bounded_bus: Backend,
) -> None:
    bus = await started(bounded_bus)
    sent = [(await bus.publish(Draft("b", "ann", f"{k}" + "x" * 29))).message for k in range(8)]
    assert await texts(bus, "b") == [m.text for m in sent[-3:]]  # 3 x 30 bytes fit in 100, 4 do not
    gone = await bus.history("b", id_key(sent[3].id), 100)
    assert gone.complete is False  # what the size bound trimmed is missing, and said so
    kept = await bus.history("b", id_key(sent[4].id), 100)
    assert kept.complete is True and [m.id for m in kept.messages] == [m.id for m in sent[5:]]

    await bus.publish(Draft("b", "ann", "é" * 40))  # 40 characters, 80 bytes: bytes are what count
    assert await texts(bus, "b") == ["é" * 40]
    await bus.publish(Draft("b", "ann", "y" * 500))  # alone over the bound: the newest always stays
    assert await texts(bus, "b") == ["y" * 500]


@pytest.mark.gen_test(timeout=30)
async def test_an_edits_text_counts_against_history_bytes_like_a_messages(bounded_bus: Backend) -> None:
    bus = await started(bounded_bus)
    sent = [(await bus.publish(Draft("e", "ann", f"{k}" + "x" * 29))).message for k in range(3)]  # 90 bytes
    await bus.change(ChangeDraft("e", "ann", "edit", sent[2].id, "z" * 20))  # 110 with the edit: one goes
    assert await texts(bus, "e") == [sent[1].text, "z" * 20]


@pytest.mark.gen_test(timeout=30)
async def test_the_redis_size_counter_is_the_streams_text_and_is_rebuilt_when_lost(redis_db: str) -> None:
    bus = RedisBroker(RedisOptions(url=redis_db, node_id="count", history_bytes=1000, retention=5))
    await bus.start(lambda entries: None, lambda notice: None)
    client = redis.Redis.from_url(redis_db, decode_responses=True, socket_timeout=5)
    keys = Keys()

    def stream_text() -> int:
        return sum(len(fields["text"].encode()) for _, fields in entries(client, keys.stream("c")))

    try:
        for k in range(20):  # trimmed by count (5, and a tenth) and by size in turn
            await bus.publish(Draft("c", "ann", "ü" * (k * 7 % 300)))
            assert int(client.get(keys.size("c")) or 0) == stream_text()
        client.delete(keys.size("c"))  # an operator's DEL, or a stream from before the counter
        await bus.publish(Draft("c", "ann", "after"))
        assert int(client.get(keys.size("c")) or 0) == stream_text()
    finally:
        client.close()
        await bus.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_room_keeps_history_bytes_of_text_and_a_resume_past_them_is_incomplete(make_server: Any) -> None:
    """--history-bytes: long messages are trimmed by size, on every bus (a cluster too), the newest always kept."""
    server = await make_server(rate_limit=0, history_bytes=40_000)
    writer = await ChatClient.connect(server.port, "long", user="ann")
    for k in range(10):
        await writer.say(f"{k:02d}" + "\u00e9" * 4000)  # 8,002 bytes each
    sent = await writer.messages(10, timeout=30)
    reader = await ChatClient.connect(server.port, "long", user="bob")
    assert ids(reader.history) == ids(sent[-4:])  # 4 x 8,002 fit in 40,000, 5 do not
    past = await ChatClient.connect(server.port, "long", user="bob", since=sent[4]["id"])
    assert ids(past.history) == ids(sent[6:]) and past.ready is not None and past.ready["complete"] is False
    reader.send({"type": "older", "before": sent[6]["id"], "limit": 200})
    page = await reader.recv_type("older", skip=NOTICES + ("message",))
    assert page["messages"] == [] and page["complete"] is True  # the older page ends where the bound did
    await writer.say("\u00e9" * 4096)  # 8,192 bytes: the oldest of the four goes
    [newest] = await writer.messages(1)
    again = await ChatClient.connect(server.port, "long", user="bob")
    assert ids(again.history) == ids(sent[-3:]) + [newest["id"]]


# ---- --memory-budget: the in-process bus ------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_past_the_budget_the_least_recently_written_rooms_lose_their_history_first() -> None:
    bus = MemoryBackend(1000, 600.0, memory_budget=100)
    await bus.start(lambda entries: None, lambda notice: None)
    first = {room: (await bus.publish(Draft(room, "ann", room * 40))).message for room in ("a", "b")}
    await bus.publish(Draft("a", "ann", "a" * 10))  # a is written to again: b is now the oldest
    await bus.publish(Draft("c", "ann", "c" * 40))  # 130 > 100: b goes
    assert bus.room_count() == 2 and bus.history_bytes() == 90
    dropped = await bus.history("b", id_key(first["b"].id), 100)
    assert dropped.messages == [] and dropped.complete is False
    assert await texts(bus, "a") == ["a" * 40, "a" * 10] and await texts(bus, "c") == ["c" * 40]
    await bus.close()


# ---- the growth attack -----------------------------------------------------------------------


async def start_server(tmp_path: Path, *args: str) -> ServerProcess:
    server = ServerProcess(
        ["--rate-limit", "0", "--log-format", "json", "--node-id", "grown", *args],
        tmp_path / "server.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET},
    )
    return await server.start()


async def status_of(url: str) -> int:
    response = await AsyncHTTPClient().fetch(url, raise_error=False, request_timeout=5)
    return response.code


@pytest.mark.gen_test(timeout=GROWTH_LIMIT + 60)
async def test_the_growth_attack_leaves_rss_under_the_budget_and_recent_rooms_intact(tmp_path: Path) -> None:
    """The audit: RSS 46.6 -> 165.6 MB in 40 s, about 10 GB an hour from one address."""
    budget = 16 * MiB
    server = await start_server(tmp_path, "--memory-budget", "16m", "--history-bytes", "1m")
    try:
        assert server.process is not None
        pid = server.process.pid
        started = rss_bytes(pid)
        # The bound: the budget's texts, as much again of allocator slack (freed texts are reused,
        # not given back), 48 MiB for the resend map (100,000 ids at most) and buffers.
        bound = started + 2 * budget + 48 * MiB
        needed = int(1.5 * (bound - started)) // len(TEXT.encode())
        # The budget drops the rooms written to least recently: at this test's pace (the rate limit off,
        # up to 30 MB/s) 16 MiB is half a second of it, so the bystander writes ten times a second.
        attack = Attack(server.port, sample=lambda: rss_bytes(pid), stop_after_accepted=needed, bystander_every=0.1)
        await attack.run(GROWTH_LIMIT)
        attacked = sum(len(ids) for ids in attack.acked.values()) * len(TEXT.encode())
        # Kept whole, the texts alone would pass the bound: without one, this test fails.
        assert attacked > bound - started, ("the attack sent too little to tell a bound from none", attacked)
        assert max(attack.samples) < bound, (max(attack.samples) / MiB, started / MiB, attacked / MiB)
        assert not attack.closed
        # The bystander kept writing: every one of its messages (the last 50 replayed) is still there.
        reader = await ChatClient.connect(server.port, "bystander", user="reader")
        assert [f["id"] for f in reader.history] == attack.bystander[-len(reader.history) :]
        assert len(reader.history) == min(50, len(attack.bystander)) and reader.ready is not None
        # So is each attacker's latest room, whole.
        for room, acked in list(attack.acked.items())[-3:]:
            latest = await ChatClient.connect(server.port, room, user="reader")
            assert [f["id"] for f in latest.history] == acked[-50:]
        # An early room was dropped for the budget: a resume into it says it is not complete.
        first_room, first_ids = next(iter(attack.acked.items()))
        resumed = await ChatClient.connect(server.port, first_room, since=first_ids[0], user="reader")
        assert resumed.history == [] and resumed.ready is not None and resumed.ready["complete"] is False
    finally:
        await server.stop()


@pytest.fixture
def small_redis(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis", ["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"])
    server.start()
    yield server
    server.kill()


def redis_info(url: str) -> dict[str, Any]:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        return dict(client.info("memory"))


@pytest.mark.gen_test(timeout=GROWTH_LIMIT + 90)
async def test_on_a_full_redis_senders_get_unavailable_readyz_is_503_and_nothing_accepted_is_lost(
    tmp_path: Path, small_redis: RedisServer
) -> None:
    """The audit: Redis 3 -> 32 MB in 20 s with maxmemory 0; with a limit, /readyz stayed 200 for 6 s
    while every publish failed, and a client resending through it was closed 1008 after 122."""
    url = small_redis.url()
    server = await start_server(tmp_path, "--redis-url", url, "--history-bytes", "1m")
    ready_url = f"{server.url}/readyz"
    try:
        # In a room whose consumer group is made before Redis is full (a full Redis cannot make one).
        keeper = await ChatClient.connect(server.port, "kept", user="keeper")
        attack = Attack(server.port, stop_after_refusals=60)
        running = asyncio.ensure_future(attack.run(GROWTH_LIMIT))
        statuses: list[int] = []
        while not running.done():  # /readyz while publishes fail for lack of memory
            statuses.append(await status_of(ready_url))
            await asyncio.wait([running], timeout=0.1)  # sampling, bounded by the attack's own deadline
        await running
        assert len(attack.refused) >= 60 and not attack.closed
        info = redis_info(url)
        assert info["used_memory_peak"] <= 16 * MiB + 256 * 1024, info["used_memory_peak"]
        assert 503 in statuses

        # Redis stays full (an operator's limit below what it holds): a client resending keeps getting
        # unavailable, and never for so long that it is closed as a sender of junk.
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            client.config_set("maxmemory", str(info["used_memory"] - MiB))
        resender = await ChatClient.connect(server.port, "kept", user="resender")
        answers = [await send(resender, f"again {k}", "same") for k in range(150)]
        assert {a.get("error") for a in answers} == {"unavailable"}
        assert await status_of(ready_url) == 503
        metrics = await AsyncHTTPClient().fetch(f"{server.url}/metrics", request_timeout=5)
        refused = float(re.search(rb"^chat_bus_out_of_memory_total (\S+)$", metrics.body, re.M).group(1))  # type: ignore[union-attr]
        assert refused >= 150 + 60
        failed_lines = server.events("bus.publish_failed")
        assert 0 < len(failed_lines) < 40, len(failed_lines)  # sampled: a few a second, not 210

        # Memory frees (here the operator raises the limit): ready again, and every refused message,
        # sent again with its client_id, is stored once.
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            client.config_set("maxmemory", str(64 * MiB))
        deadline = time.monotonic() + 10
        while await status_of(ready_url) != 200:
            assert time.monotonic() < deadline, "/readyz never came back once Redis had room"
            await asyncio.sleep(0.1)  # polling /readyz, bounded by the deadline
        assert (await send(resender, "again", "same"))["type"] == "ack"
        for refusal in attack.refused:
            again = await ChatClient.connect(server.port, refusal.room, user=refusal.user)
            answer = await send(again, refusal.text, refusal.client_id)
            assert answer["type"] == "ack", answer
            attack.acked.setdefault(refusal.room, []).append(answer["id"])
            again.close()
        stored = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        try:
            for room, acked in attack.acked.items():
                in_redis = [entry_id for entry_id, _ in entries(stored, Keys().stream(room))]
                assert sorted(acked, key=id_key) == in_redis, room  # none lost, none twice
        finally:
            stored.close()
        keeper.close()
    finally:
        await server.stop()
