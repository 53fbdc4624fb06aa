"""The Redis Streams bus: several processes, failures, persistence, consumer groups.

Everything runs against real redis-server processes: the session's (a fresh
database per test) when Redis stays up, one of the test's own when the test
stops, pauses or restarts it. Multi-process tests run real ``server.py``
processes; the rest run the server in the test's IOLoop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis

from bus.message import Draft, id_key
from bus.redis import RedisBroker, RedisOptions
from bus.redis.keys import Keys
from tests.client import ChatClient, ids, strictly_increasing
from tests.conftest import Spawn
from tests.helpers import eventually, fetch, free_port
from tests.services import RedisServer


@pytest.fixture
def backend() -> str:
    """Every server these tests make runs on the Redis bus."""
    return "redis"


@pytest.fixture
def redis_client(io_loop: Any, redis_db: str) -> Iterator[aioredis.Redis]:
    """A client of the test's database of the session Redis, for looking behind the server's back."""
    client = aioredis.Redis.from_url(redis_db, decode_responses=True, socket_timeout=5)
    yield client
    io_loop.run_sync(client.aclose)


async def reply_to(client: ChatClient, client_id: str) -> dict[str, Any]:
    """The ack or error frame for a message sent with ``client_id``, skipping other frames."""
    while True:
        frame = await client.recv()
        if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
            return frame


async def send_for_ack(client: ChatClient, text: str, client_id: str) -> dict[str, Any]:
    """Send one message; return its ack or error frame (its echo may be skipped on the way)."""
    await client.say(text, client_id=client_id)
    return await reply_to(client, client_id)


KEYS = Keys()
stream_key = KEYS.stream


async def group_names(client: aioredis.Redis, room: str) -> set[str]:
    """The room's consumer groups, by node id (a group is named after a process's incarnation, node/token)."""
    return {group["name"].rpartition("/")[0] for group in await client.xinfo_groups(stream_key(room))}


async def incarnations(client: aioredis.Redis, room: str, node: str) -> list[str]:
    return [g["name"] for g in await client.xinfo_groups(stream_key(room)) if g["name"].startswith(node + "/")]


async def xreadgroup_calls(client: aioredis.Redis) -> int:
    return int((await client.info("commandstats")).get("cmdstat_xreadgroup", {}).get("calls", 0))


# ---- several processes, one chat (acceptance 2, 3, 7) ----------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_two_processes_show_their_clients_one_order(spawn: Spawn, redis_db: str) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db)
    ann = await ChatClient.connect(one.port, "plaza", user="ann")
    bob = await ChatClient.connect(two.port, "plaza", user="bob")

    async def say_many(client: ChatClient, prefix: str) -> None:
        for k in range(40):
            await client.say(f"{prefix}{k}")

    await asyncio.gather(say_many(ann, "a"), say_many(bob, "b"))
    seen_by_ann, seen_by_bob = await ann.messages(80), await bob.messages(80)
    assert ids(seen_by_ann) == ids(seen_by_bob)
    assert strictly_increasing(ids(seen_by_ann))
    texts = [frame["message"] for frame in seen_by_ann]
    assert sorted(texts) == sorted([f"a{k}" for k in range(40)] + [f"b{k}" for k in range(40)])
    for prefix in "ab":  # each sender's messages crossed to the other process, in the order sent
        assert [t for t in texts if t[0] == prefix] == [f"{prefix}{k}" for k in range(40)]


@pytest.mark.gen_test(timeout=90)
async def test_a_killed_node_restarted_under_its_id_misses_nothing_and_leaves_nothing_behind(
    spawn: Spawn, redis_db: str, redis_client: aioredis.Redis
) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db)
    ann = await ChatClient.connect(one.port, "crash", user="ann")
    bob = await ChatClient.connect(two.port, "crash", user="bob")
    for k in range(50):
        await bob.say(f"m{k}")
    seen = await ann.messages(50)
    assert ids(await bob.messages(50)) == ids(seen)
    [old_group] = await incarnations(redis_client, "crash", "n1")

    one.kill()  # SIGKILL while n2 goes on taking messages
    for k in range(50, 200):
        await bob.say(f"m{k}")
    sent = await bob.messages(150)
    assert [f["message"] for f in sent] == [f"m{k}" for k in range(50, 200)]

    await one.start()  # same port, same node id: a new incarnation
    again = await ChatClient.connect(one.port, "crash", user="ann", since=seen[-1]["id"])
    assert again.ready is not None and again.ready["complete"] is True
    assert ids(again.history) == ids(sent)  # every missed message, once, in order
    await bob.say("after")
    [live] = await again.messages(1)
    assert live["message"] == "after"
    await bob.say("marker")
    [marker] = await again.messages(1)
    assert marker["message"] == "marker"  # and nothing twice before it

    async def old_group_gone() -> bool:  # the earlier run's group is buried at the restart, not kept pending
        return old_group not in await incarnations(redis_client, "crash", "n1")

    await eventually(old_group_gone, 10, "n1's earlier group destroyed")
    [new_group] = await incarnations(redis_client, "crash", "n1")
    pending = await redis_client.xpending(stream_key("crash"), new_group)

    async def acked() -> bool:
        return int((await redis_client.xpending(stream_key("crash"), new_group))["pending"]) == 0

    await eventually(acked, 5, f"n1's new group acknowledged everything (pending: {pending})")


@pytest.mark.gen_test(timeout=60)
async def test_one_client_id_sent_at_once_through_two_processes_is_published_once(
    spawn: Spawn, redis_db: str, redis_client: aioredis.Redis
) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db)
    via_one = await ChatClient.connect(one.port, "dup", user="ann")
    via_two = await ChatClient.connect(two.port, "dup", user="ann")
    watcher = await ChatClient.connect(two.port, "dup", user="eve")

    for k in range(10):
        cid = f"c{k}"
        await asyncio.gather(via_one.say(f"hi {k}", client_id=cid), via_two.say(f"hi {k}", client_id=cid))
        first, second = await reply_to(via_one, cid), await reply_to(via_two, cid)
        assert first["type"] == second["type"] == "ack" and first["id"] == second["id"]
    texts = [frame["message"] for frame in await watcher.messages(10)]
    assert texts == [f"hi {k}" for k in range(10)]
    await via_one.say("end")
    [end] = await watcher.messages(1)
    assert end["message"] == "end"  # no second copy of anything came before it
    assert await redis_client.xlen(stream_key("dup")) == 11


# ---- Redis failures (acceptance 4, 5, 6) -----------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_redis_down_means_unavailable_and_503_and_an_empty_restart_recovers(
    spawn: Spawn, own_redis: RedisServer
) -> None:
    own_redis.start()
    server = await spawn("n1", own_redis.url(), "--redis-timeout", "1")
    ann = await ChatClient.connect(server.port, "outage", user="ann")
    watcher = await ChatClient.connect(server.port, "outage", user="eve")
    assert (await send_for_ack(ann, "before", "c0"))["type"] == "ack"
    [before] = await watcher.messages(1)

    await asyncio.to_thread(own_redis.kill)
    for attempt in range(3):
        started = time.monotonic()
        error = await send_for_ack(ann, "lost", f"down{attempt}")
        # Within --redis-timeout (1 s), with a generous margin for a loaded machine.
        assert error["error"] == "unavailable" and time.monotonic() - started < 1.0 + 2.0
    ready = await fetch(server.port, "/readyz")
    assert ready.code == 503 and json.loads(ready.body)["reason"]

    await asyncio.to_thread(own_redis.start)  # same port, nothing persisted: an empty Redis
    deadline, attempt = time.monotonic() + 10, 0
    while (reply := await send_for_ack(ann, "after", f"up{attempt}"))["type"] != "ack":
        assert time.monotonic() < deadline, "no message accepted within 10 s of Redis coming back"
        attempt += 1
        await asyncio.sleep(0.1)  # polling for recovery, bounded by the deadline
    [after] = await watcher.messages(1)  # delivered live through the re-created group
    assert after["id"] == reply["id"] and after["message"] == "after"
    assert (await fetch(server.port, "/readyz")).code == 200

    async def recovery_logged() -> bool:  # log lines leave in batches, up to 50 ms late
        return bool(server.events("bus.recovered"))

    await eventually(recovery_logged, 5, "bus.recovered logged")
    errors, recoveries = server.events("bus.error"), server.events("bus.recovered")
    assert len(errors) == 1 and errors[0]["reason"]  # once per outage, with the reason
    assert len(recoveries) == 1
    metrics = (await fetch(server.port, "/metrics")).body.decode()
    assert "chat_bus_reconnects_total 1.0" in metrics.splitlines()
    # A since from before the restart: that history is gone, and the ready frame says so.
    resumed = await ChatClient.connect(server.port, "outage", since=before["id"])
    assert resumed.ready is not None and resumed.ready["complete"] is False
    assert ids(resumed.history) == [after["id"]]


@pytest.mark.gen_test(timeout=30)
async def test_a_server_started_before_its_redis_becomes_ready_when_redis_comes(
    make_server: Any, own_redis: RedisServer
) -> None:
    own_redis.port = free_port()
    server = await make_server(redis_url=own_redis.url())
    assert (await fetch(server.port, "/readyz")).code == 503
    await asyncio.to_thread(own_redis.start)  # off the loop: the server keeps serving meanwhile

    async def ready() -> bool:
        return (await fetch(server.port, "/readyz")).code == 200

    await eventually(ready, 10, "/readyz 200 once Redis is up")
    ann = await ChatClient.connect(server.port, "late", user="ann")
    await ann.say("hello")
    [frame] = await ann.messages(1)
    assert frame["message"] == "hello"


@pytest.mark.gen_test(timeout=30)
async def test_a_hung_redis_fails_a_publish_within_redis_timeout(make_server: Any, own_redis: RedisServer) -> None:
    own_redis.start()
    server = await make_server(redis_url=own_redis.url(), redis_timeout=0.5)
    ann = await ChatClient.connect(server.port, "hung", user="ann")
    own_redis.pause()
    try:
        started = time.monotonic()
        error = await send_for_ack(ann, "stuck", "c1")
        # Within --redis-timeout (0.5 s), with a generous margin for a loaded machine.
        assert error["error"] == "unavailable" and time.monotonic() - started < 0.5 + 2.0
        assert server.bus.unavailable_reason() is not None
    finally:
        own_redis.resume()

    async def ready() -> bool:
        return server.bus.unavailable_reason() is None

    await eventually(ready, 10, "bus ready again")
    assert (await send_for_ack(ann, "free", "c2"))["type"] == "ack"
    assert server.bus.backend.recoveries == 1  # what a reconnects metric counts


@pytest.mark.gen_test(timeout=60)
async def test_an_append_only_redis_restart_keeps_history_ids_and_resume(
    make_server: Any, own_redis: RedisServer
) -> None:
    own_redis.start(args=["--appendonly", "yes"])
    server = await make_server(redis_url=own_redis.url(), rate_limit=0)
    ann = await ChatClient.connect(server.port, "kept", user="ann")
    for k in range(5):
        await ann.say(f"m{k}")
    sent = await ann.messages(5)

    old_pid = own_redis.process.pid if own_redis.process else None
    await asyncio.to_thread(own_redis.restart)  # off the loop: the server lives through the restart
    assert own_redis.process is not None and own_redis.process.pid != old_pid

    async def ready() -> bool:
        return server.bus.unavailable_reason() is None

    await eventually(ready, 10, "bus ready after the restart")
    joined = await ChatClient.connect(server.port, "kept", user="bob")
    assert ids(joined.history) == ids(sent) and joined.ready is not None and joined.ready["complete"] is True
    resumed = await ChatClient.connect(server.port, "kept", since=sent[1]["id"])
    assert ids(resumed.history) == ids(sent[2:]) and resumed.ready is not None
    assert resumed.ready["complete"] is True

    await joined.say("later")
    [later_for_ann] = await ann.messages(1)  # ann's connection lived through the restart
    [later_for_resumed] = await resumed.messages(1)
    assert later_for_ann["id"] == later_for_resumed["id"]
    assert id_key(later_for_ann["id"]) > id_key(sent[-1]["id"])


@pytest.mark.gen_test(timeout=30)
async def test_trimming_records_the_newest_trimmed_id_exactly(io_loop: Any, redis_db: str) -> None:
    backend = RedisBroker(RedisOptions(url=redis_db, retention=20, node_id="trim"))
    await backend.start(lambda messages: None)
    try:
        stored = [(await backend.publish(Draft("t", "ann", f"m{k}"))).message for k in range(100)]
        full = await backend.history("t", None, 1000)
        retained = [m.id for m in full.messages]
        assert 20 <= len(retained) <= 22 and retained == [m.id for m in stored[-len(retained) :]]
        assert full.complete is False  # the room's history is no longer whole
        newest_trimmed = stored[-len(retained) - 1]
        at_the_edge = await backend.history("t", newest_trimmed.key, 50)
        assert at_the_edge.complete is True and [m.id for m in at_the_edge.messages] == retained
        one_before = await backend.history("t", stored[-len(retained) - 2].key, 50)
        assert one_before.complete is False
    finally:
        await backend.close()


# ---- consumer groups: the read loop, vanished groups, dead nodes -----------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_new_rooms_first_message_arrives_at_once(make_server: Any) -> None:
    server = await make_server()
    await ChatClient.connect(server.port, "first")
    for k in range(4):
        client = await ChatClient.connect(server.port, f"new{k}")
        started = time.monotonic()
        await client.say("hello")
        await client.messages(1)
        # Nothing polls: the room's doorbell wakes its shard's reader (a poll would take its period).
        assert time.monotonic() - started < 0.5


@pytest.mark.gen_test(timeout=60)
async def test_rooms_caught_up_take_messages_from_their_doorbells_and_idle_rooms_cost_nothing(
    make_server: Any, own_redis: RedisServer
) -> None:
    own_redis.start()
    server = await make_server(redis_url=own_redis.url(), max_connections_per_client=1000)
    rooms = [f"r{k}" for k in range(200)]
    clients = await asyncio.gather(*(ChatClient.connect(server.port, room) for room in rooms))
    async with aioredis.Redis.from_url(own_redis.url(), decode_responses=True) as direct:
        idle_before = await xreadgroup_calls(direct)
        await clients[0].say("tick")  # a marker: once it is back, any read the joins caused is done
        await clients[0].messages(1)
        reads_before = await xreadgroup_calls(direct)
        assert reads_before - idle_before <= 3, "holding 200 idle rooms costs no reads"
        for room, client in zip(rooms[:20], clients[:20]):
            await client.say(room)
        for room, client in zip(rooms[:20], clients[:20]):
            [frame] = await client.messages(1)
            assert frame["message"] == room
        reads = await xreadgroup_calls(direct) - reads_before
    # Each room was caught up by its first read: its doorbells carry the entries, nothing is read.
    assert reads == 0, f"{reads} XREADGROUP calls for 20 messages in 20 of 200 caught-up rooms"


@pytest.mark.gen_test(timeout=30)
async def test_a_vanished_group_is_recreated_where_the_node_left_off(
    make_server: Any, redis_client: aioredis.Redis
) -> None:
    server = await make_server(rate_limit=0)
    ann = await ChatClient.connect(server.port, "gone", user="ann")
    for k in range(3):
        await ann.say(f"m{k}")
    before = await ann.messages(3)
    [group] = await incarnations(redis_client, "gone", "test-node")
    await redis_client.xgroup_destroy(stream_key("gone"), group)  # as a janitor or an empty restart would
    await redis_client.client_kill_filter(_type="pubsub")  # doorbells missed: the room must be read again
    for k in range(3, 6):  # that read finds no group
        await ann.say(f"m{k}")
    after = await ann.messages(3)
    assert [f["message"] for f in after] == ["m3", "m4", "m5"]
    assert strictly_increasing(ids(before + after))
    assert server.bus.unavailable_reason() is None  # a lost group is not an outage
    assert await incarnations(redis_client, "gone", "test-node") == [group]  # made again under its name
    await ann.say("marker")
    assert [f["message"] for f in await ann.messages(1)] == ["marker"]  # nothing twice before it


@pytest.mark.gen_test(timeout=60)
async def test_a_dead_processes_group_is_removed_after_presence_timeout(
    make_server: Any, spawn: Spawn, redis_db: str, redis_client: aioredis.Redis
) -> None:
    live = await make_server(node_id="live", presence_timeout=1.0)
    ghost = await spawn("ghost", redis_db, "--presence-timeout", "1")
    on_live = await ChatClient.connect(live.port, "haunt", user="ann")
    await ChatClient.connect(ghost.port, "haunt", user="bob")
    assert await group_names(redis_client, "haunt") == {"live", "ghost"}
    [ghost_incarnation] = await incarnations(redis_client, "haunt", "ghost")

    # While the ghost lives, the live process's janitor passes over it for longer than the limit.
    live_incarnation = live.bus.backend.identity.current
    start = float(await redis_client.zscore(KEYS.alive, live_incarnation) or 0)

    async def live_beat_past_limit() -> bool:
        return float(await redis_client.zscore(KEYS.alive, live_incarnation) or 0) > start + 1500

    await eventually(live_beat_past_limit, 10, "live process heartbeats for 1.5 s")
    assert await group_names(redis_client, "haunt") == {"live", "ghost"}

    ghost.kill()

    async def ghost_gone() -> bool:
        return await group_names(redis_client, "haunt") == {"live"}

    async def ghost_forgotten() -> bool:  # after its groups and counts (liveness._bury): not at the same instant
        gone = await redis_client.zscore(KEYS.alive, ghost_incarnation) is None
        return gone and not await redis_client.exists(KEYS.rooms_of(ghost_incarnation))

    await eventually(ghost_gone, 10, "the dead process's group destroyed")
    await eventually(ghost_forgotten, 10, "the dead process forgotten: its heartbeat and its room list")
    await on_live.say("still here")
    [frame] = await on_live.messages(1)
    assert frame["message"] == "still here"


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_joins_waits_for_redis_connections_instead_of_failing(make_server: Any) -> None:
    """A reconnect storm (every page of a restarted process at once) must not be refused."""
    # A storm comes from many addresses; these 300 share one, over the default per-address limit.
    # A pool that made joins fail would fail at once; the generous timeouts are for a loaded
    # machine (300 joins in this one process, under coverage), not part of what is shown.
    server = await make_server(max_connections_per_client=300, redis_timeout=10)
    rooms = [f"storm{k % 5}" for k in range(300)]
    clients = await asyncio.gather(*(ChatClient.connect(server.port, room, timeout=30) for room in rooms))
    assert [client.ready["room"] if client.ready else None for client in clients] == rooms
    assert (await fetch(server.port, "/readyz")).code == 200
    for room in rooms[:5]:  # every one of them is in its room: a message reaches all 60
        await clients[rooms.index(room)].say(f"to {room}")
    received = await asyncio.gather(*(client.messages(1) for client in clients))
    assert [frames[0]["message"] for frames in received] == [f"to {room}" for room in rooms]


@pytest.mark.gen_test(timeout=30)
async def test_a_burst_of_joins_into_a_room_is_written_and_read_in_a_few_batches(own_redis: RedisServer) -> None:
    """Joins that come while a room's presence write (read) is under way share the next one (bus/redis/presence.py)."""
    own_redis.start()
    backend = RedisBroker(RedisOptions(url=own_redis.url(), node_id="batch"))
    await backend.start(lambda messages: None)
    users = [f"u{k:02d}" for k in range(50)]
    try:
        async with aioredis.Redis.from_url(own_redis.url(), decode_responses=True) as direct:

            async def calls(command: str) -> int:
                return int((await direct.info("commandstats")).get(f"cmdstat_{command}", {}).get("calls", 0))

            async def script_runs() -> int:
                return await calls("evalsha")

            before = await script_runs()
            await asyncio.gather(*(backend.set_connections("plaza", user, 1) for user in users))
            runs = await script_runs() - before
            assert dict(await backend.members("plaza")) == {user: 1 for user in users}
            # The first write alone, the 49 who came meanwhile in the next: not 50 writes in a row.
            assert runs <= 3, f"{runs} presence writes for 50 joins"
            await asyncio.gather(*(backend.set_connections("plaza", user, 0) for user in users[::2]))
            reads_before = await calls("hgetall")
            lists = await asyncio.gather(*(backend.members("plaza") for _ in users))
            reads = await calls("hgetall") - reads_before
            assert [dict(found) for found in lists] == [{user: 1 for user in users[1::2]}] * len(users)
            assert reads <= 3, f"{reads} reads of the member list for 50 joiners asking at once"
    finally:
        await backend.close()
