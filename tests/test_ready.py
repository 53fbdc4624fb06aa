"""``/readyz`` follows the bus (503 with the reason while it cannot publish).

On the in-process bus the one state that cannot publish is a closed bus; on
the Redis bus, a real redis-server of the test's own is killed and started again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.client import ChatClient
from tests.helpers import ON_MEMORY, ON_REDIS, eventually, fetch
from tests.services import RedisServer
from tests.test_metrics import scrape, value


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    response = await fetch(port, "/readyz")
    return response.code, json.loads(response.body)


@pytest.mark.gen_test(timeout=20)
@ON_MEMORY
async def test_readyz_is_503_with_the_reason_while_the_memory_bus_is_closed(make_server: Any) -> None:
    server = await make_server()
    assert await readyz(server.port) == (200, {"status": "ready"})
    await server.bus.close()
    assert await readyz(server.port) == (503, {"status": "unavailable", "reason": "bus closed"})
    await server.bus.start()
    assert await readyz(server.port) == (200, {"status": "ready"})


@pytest.mark.gen_test(timeout=30)
@ON_REDIS
async def test_readyz_follows_a_redis_that_stops_and_comes_back(make_server: Any, tmp_path: Path) -> None:
    own_redis = RedisServer(tmp_path / "redis")
    own_redis.start()
    try:
        server = await make_server(redis_url=own_redis.url(), redis_timeout=0.5)
        client = await ChatClient.connect(server.port, "r")
        assert await readyz(server.port) == (200, {"status": "ready"})
        await asyncio.to_thread(own_redis.kill)  # off the loop: the server serves through the outage

        await client.say("lost?")
        assert (await client.recv_type("error"))["error"] == "unavailable"
        status, body = await readyz(server.port)
        assert status == 503 and body["status"] == "unavailable" and body["reason"], body
        assert value(await scrape(server.port), "chat_messages_rejected_total", reason="unavailable") == 1

        await asyncio.to_thread(own_redis.start)  # same port, empty

        async def ready() -> bool:
            return await readyz(server.port) == (200, {"status": "ready"})

        await eventually(ready, 10, "/readyz 200 once Redis is back")
        await client.say("stored")
        assert [m["message"] for m in await client.messages(1)] == ["stored"]
    finally:
        own_redis.kill()
