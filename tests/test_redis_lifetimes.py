"""On the Redis bus: room lifetimes, groups that a failed join leaves, and input that is no outage.

Against a real redis-server (the session's, a database per test). The bus is
driven directly, as the RoomBus drives it; where a lost reply is needed, the
command really runs in Redis and only its answer is dropped on the way back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bus.backend import BusUnavailable
from bus.message import Draft, IdKey
from bus.redis import RedisBroker, RedisOptions
from bus.redis.keys import Keys

KEYS = Keys()


async def started(options: RedisOptions) -> RedisBroker:
    broker = RedisBroker(options)
    await broker.start(lambda messages: None)
    return broker


async def eventually(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)  # polling Redis, bounded by the deadline


@pytest.fixture
def direct(io_loop: Any, redis_db: str) -> Iterator[aioredis.Redis]:
    """A client of the test's database, for looking behind the bus's back."""
    client = aioredis.Redis.from_url(redis_db, decode_responses=True, socket_timeout=5)
    yield client
    io_loop.run_sync(client.aclose)


@pytest.mark.gen_test(timeout=30)
async def test_a_room_whose_last_message_is_older_than_the_ttl_is_removed_with_every_key(
    redis_db: str, direct: aioredis.Redis
) -> None:
    broker = await started(RedisOptions(url=redis_db, node_id="ttl", room_ttl=1.0))
    try:
        first = (await broker.publish(Draft("brief", "ann", "hello", client_id="c1"))).message
        assert {k async for k in direct.scan_iter(match="*brief*")}  # stream, born, resend key
        await broker.publish(Draft("lasting", "ann", "still here"))

        async def brief_gone() -> bool:
            return not [k async for k in direct.scan_iter(match="*brief*")]

        await eventually(brief_gone, 10, "every key of the room removed")
        later = await broker.history("brief", first.key, 50)
        assert later.complete is False and later.messages == []  # the resume knows history was lost
    finally:
        await broker.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_join_whose_answer_was_lost_leaves_no_group_behind(redis_db: str, direct: aioredis.Redis) -> None:
    broker = await started(RedisOptions(url=redis_db, node_id="lost", presence_timeout=0.4))
    consumer = broker._consumer
    real_ensure = consumer._ensure

    async def ensure_then_lose_the_answer(shard: Any, groups: Any) -> None:
        await real_ensure(shard, groups)  # Redis makes the group...
        raise TimeoutError("the answer never came")  # ...and the join gives up on it

    consumer._ensure = ensure_then_lose_the_answer  # type: ignore[method-assign]
    try:
        with pytest.raises(BusUnavailable):
            await broker.subscribe("flaky")
        assert len(await direct.xinfo_groups(KEYS.stream("flaky"))) == 1  # left behind, for now
        consumer._ensure = real_ensure  # type: ignore[method-assign]

        async def no_group() -> bool:
            return not await direct.exists(KEYS.stream("flaky"))  # group dropped, and the empty stream with it

        await eventually(no_group, 5, "the group the failed join left is dropped")
        assert not await direct.sismember(KEYS.rooms_of(broker.identity.current), "flaky")
    finally:
        await broker.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_id_redis_refuses_is_a_bad_request_not_an_outage(redis_db: str) -> None:
    broker = await started(RedisOptions(url=redis_db, node_id="bad"))
    try:
        await broker.publish(Draft("r", "ann", "hello"))
        with capture_logs() as logs:
            with pytest.raises(BusUnavailable):
                await broker.history("r", IdKey(2**64 + 5, 0), 50)  # past the edge's check, Redis says no
        assert broker.unavailable_reason() is None and broker.recoveries == 0
        assert "bus.error" not in [entry["event"] for entry in logs]
        assert (await broker.history("r", None, 50)).messages  # and everything still works
    finally:
        await broker.close()
