"""A user's message budget in a room is one over every process on the Redis bus (single Redis and Cluster).

Each process keeps a local token bucket per user and room (the cheap first
line); the Redis bus keeps the same budget in the room's slot, checked by
``publish.lua`` after the resend check and before the message is stored. So
a user with tabs on two processes gets one budget, not two. The process
tests run real ``server.py`` processes on a real Redis; the bus tests drive
a ``RedisBroker`` on a real Redis and on a real Redis Cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis

from bus.backend import RateLimited
from bus.message import Draft
from bus.redis import RedisBroker, RedisOptions
from bus.redis.keys import Keys
from bus.user_key import user_key
from ops.redis_cluster import LocalRedisCluster
from tests.client import ChatClient
from tests.conftest import Spawn
from tests.helpers import eventually
from tests.tokens import TOKEN_SECRET, hs256, token_cookie

RATE, BURST = 2.0, 10  # per second, and saved: the budget the process tests give every user
SENT_PER_TAB = 300  # as fast as the tab can: each message as soon as the last one was answered
# Every test client shares 127.0.0.1, whose per-address bucket is local to each process: off here,
# so what these tests count is the user's budget alone.
LIMITS = ("--rate-limit", str(RATE), "--rate-burst", str(BURST), "--client-rate-limit", "0")


@pytest.fixture
def backend() -> str:
    return "redis"


async def started(options: RedisOptions) -> RedisBroker:
    broker = RedisBroker(options)
    await broker.start(lambda messages: None)
    return broker


@pytest.fixture(params=["single", "sharded"])
def bus_url(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The RedisOptions of a fresh place: a database of the session's Redis, or the session's Redis Cluster."""
    if request.param == "single":
        yield {"url": request.getfixturevalue("redis_db")}
    else:
        settings = request.getfixturevalue("cluster_bus_settings")
        yield {"url": settings["redis_url"], "cluster": True, "prefix": settings["redis_prefix"]}


# ---- the bus: publish.lua's shared bucket ------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_the_bus_refuses_past_the_burst_per_user_and_room_and_keeps_the_bucket_in_the_rooms_slot(
    bus_url: dict[str, Any],
) -> None:
    options = RedisOptions(node_id="rate", rate_limit=0.001, rate_burst=3, **bus_url)
    one, two = await started(options), await started(dataclasses.replace(options, node_id="rate2"))
    try:
        accepted = [(await (one, two)[k % 2].publish(Draft("r", "ann", f"a{k}", f"c{k}"))).message for k in range(3)]
        with pytest.raises(RateLimited):
            await two.publish(Draft("r", "ann", "one too many", "c3"))
        # A resend of an accepted message still gets its original: the resend check comes first.
        again = await one.publish(Draft("r", "ann", "a0", "c0"))
        assert again.duplicate and again.message.id == accepted[0].id
        # Another user, and the same user in another room, have budgets of their own.
        await one.publish(Draft("r", "bob", "b"))
        await one.publish(Draft("elsewhere", "ann", "x"))
        # A token's user is its sub, whatever name each tab shows; a name equal to the sub is someone else.
        for k, name in enumerate(("Ann", "Annie", "Ann")):
            await (one, two)[k % 2].publish(Draft("r", user_key(name, "u-ann"), f"t{k}"))
        with pytest.raises(RateLimited):
            await one.publish(Draft("r", user_key("A.", "u-ann"), "t3"))
        await one.publish(Draft("r", "u-ann", "a cookie's user"))

        history = await one.history("r", None, 100)
        texts = [m.text for m in history.messages]
        assert texts == ["a0", "a1", "a2", "b", "t0", "t1", "t2", "a cookie's user"]  # nothing refused was stored
        keys = Keys(options.prefix)
        client = aioredis.RedisCluster.from_url(options.url) if options.cluster else aioredis.from_url(options.url)
        try:
            for key in (keys.rate("r", "ann"), keys.rate("r", user_key("Ann", "u-ann"))):
                assert key.startswith(f"{options.prefix}:{{r}}:rate:")  # found by the room's name, in its slot
                tokens = await client.hget(key, "tokens")
                assert tokens is not None and float(tokens) < 1
                assert 0 < await client.pttl(key) <= 3 / 0.001 * 1000  # gone once it would be full again
            assert keys.rate("r", user_key("Ann", "u-ann")) == f"{options.prefix}:{{r}}:rate:sub:u-ann"
            assert keys.rate("r", "ann") == f"{options.prefix}:{{r}}:rate:name:ann"
        finally:
            await client.aclose()
    finally:
        await one.close()
        await two.close()


@pytest.mark.gen_test(timeout=30)
async def test_the_shared_bucket_refills_at_the_rate_and_a_rate_of_zero_is_no_limit(redis_db: str) -> None:
    broker = await started(RedisOptions(url=redis_db, node_id="refill", rate_limit=5, rate_burst=1))
    unlimited = await started(RedisOptions(url=redis_db, node_id="free", rate_limit=0, rate_burst=1))
    try:
        await broker.publish(Draft("r", "ann", "first"))
        refused_at = time.monotonic()
        with pytest.raises(RateLimited):
            await broker.publish(Draft("r", "ann", "too soon"))

        async def accepted() -> bool:
            try:
                await broker.publish(Draft("r", "ann", "later"))
            except RateLimited:
                return False
            return True

        await eventually(accepted, 5, "the bucket refilled one token")
        assert time.monotonic() - refused_at >= 0.1  # a fifth of a second per token, less the clocks' slack
        for k in range(20):
            await unlimited.publish(Draft("r", "bob", f"free {k}"))
    finally:
        await broker.close()
        await unlimited.close()


# ---- two processes, one user with a tab on each -------------------------------------------


async def reply_to(client: ChatClient, client_id: str) -> dict[str, Any]:
    """The ack or error frame for ``client_id``; echoes and notices on the way are skipped."""
    while True:
        frame = await client.recv(timeout=10)
        if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
            return frame


async def flood(tab: ChatClient, tag: str) -> tuple[int, set[str]]:
    """Send SENT_PER_TAB messages, each once the last was answered: (accepted, the refusals' codes)."""
    accepted, refusals = 0, set()
    for k in range(SENT_PER_TAB):
        client_id = f"{tag}-{k}"
        tab.send({"message": f"{tag} {k}", "client_id": client_id})
        reply = await reply_to(tab, client_id)
        if reply["type"] == "ack":
            accepted += 1
        else:
            refusals.add(reply["error"])
    return accepted, refusals


async def paced(client: ChatClient, count: int) -> int:
    """Send ``count`` messages within the user's own burst; how many were accepted."""
    acks = 0
    for k in range(count):
        client.send({"message": f"calm {k}", "client_id": f"calm-{k}"})
        acks += (await reply_to(client, f"calm-{k}"))["type"] == "ack"
    return acks


async def one_user_on_two_processes(tabs: list[ChatClient], other: ChatClient) -> None:
    """Both tabs flood at once while another user talks: the user's total stays within one budget."""
    started = time.monotonic()
    (first, refused_1), (second, refused_2), others = await asyncio.gather(
        flood(tabs[0], "t1"), flood(tabs[1], "t2"), paced(other, BURST // 2)
    )
    window = time.monotonic() - started
    total = first + second
    assert refused_1 | refused_2 == {"rate_limited"}
    assert total <= RATE * window + BURST, (first, second, window)
    # Two budgets would give each tab its burst at least: 2 x BURST. One gives BURST plus the refill.
    assert window < BURST / RATE and total < 2 * BURST, (first, second, window)
    assert total >= BURST
    assert others == BURST // 2  # the other user's budget is its own


@pytest.mark.gen_test(timeout=90)
async def test_token_mode_one_sub_with_a_tab_on_each_of_two_processes_has_one_budget(
    spawn: Spawn, redis_db: str, tmp_path: Path
) -> None:
    secret = tmp_path / "token-secret"
    secret.write_text(TOKEN_SECRET + "\n")
    one = await spawn("node-1", redis_db, "--token-secret-file", str(secret), *LIMITS)
    two = await spawn("node-2", redis_db, "--token-secret-file", str(secret), *LIMITS)
    # Two names, one sub: the budget is the sub's.
    tab_1 = await ChatClient.connect(one.port, "hall", headers=token_cookie(hs256("u-ann", name="Ann")))
    tab_2 = await ChatClient.connect(two.port, "hall", headers=token_cookie(hs256("u-ann", name="Annie")))
    bob = await ChatClient.connect(two.port, "hall", headers=token_cookie(hs256("u-bob", name="Bob")))
    await one_user_on_two_processes([tab_1, tab_2], bob)


@pytest.mark.gen_test(timeout=90)
async def test_cookie_mode_one_name_with_a_tab_on_each_of_two_processes_has_one_budget(
    spawn: Spawn, redis_db: str
) -> None:
    one = await spawn("node-1", redis_db, *LIMITS)
    two = await spawn("node-2", redis_db, *LIMITS)
    tab_1 = await ChatClient.connect(one.port, "hall", user="ann")
    tab_2 = await ChatClient.connect(two.port, "hall", user="ann")
    bob = await ChatClient.connect(one.port, "hall", user="bob")
    await one_user_on_two_processes([tab_1, tab_2], bob)


@pytest.mark.gen_test(timeout=120)
async def test_on_a_redis_cluster_one_sub_on_two_processes_has_one_budget(
    spawn: Spawn, redis_cluster: LocalRedisCluster, cluster_bus_settings: dict[str, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "token-secret"
    secret.write_text(TOKEN_SECRET + "\n")
    on_cluster = ("--redis-cluster", "--redis-prefix", cluster_bus_settings["redis_prefix"])
    token = ("--token-secret-file", str(secret))
    one = await spawn("node-1", redis_cluster.url, *on_cluster, *token, *LIMITS)
    two = await spawn("node-2", redis_cluster.url, *on_cluster, *token, *LIMITS)
    tab_1 = await ChatClient.connect(one.port, "hall", headers=token_cookie(hs256("u-ann", name="Ann")))
    tab_2 = await ChatClient.connect(two.port, "hall", headers=token_cookie(hs256("u-ann", name="Ann")))
    bob = await ChatClient.connect(one.port, "hall", headers=token_cookie(hs256("u-bob", name="Bob")))
    await one_user_on_two_processes([tab_1, tab_2], bob)
