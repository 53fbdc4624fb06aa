"""Moderation through a Redis restart: what was in force holds, and later changes reach every process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api_kit import api_settings, call
from tests.client import ChatClient
from tests.helpers import eventually
from tests.services import RedisServer


@pytest.fixture
def backend() -> str:
    return "redis"


@pytest.mark.gen_test(timeout=90)
async def test_bans_and_disconnects_carry_on_after_redis_restarts(make_server: Any, own_redis: RedisServer) -> None:
    own_redis.start(args=["--appendonly", "yes"])
    a = await make_server(**api_settings(redis_url=own_redis.url(), node_id="node-a"))
    b = await make_server(**api_settings(redis_url=own_redis.url(), node_id="node-b"))
    status, _ = await call(a.api.port, "POST", "/api/users/old/disconnect", {"ban_seconds": 600})
    assert status == 200
    await asyncio.to_thread(own_redis.restart)  # off the loop: both servers live through it

    async def both_ready() -> bool:
        return a.bus.unavailable_reason() is None and b.bus.unavailable_reason() is None

    await eventually(both_ready, 15, "both buses ready after the restart")
    refused = await ChatClient.connect(b.port, "room", user="old", join=False)
    assert await refused.wait_closed() == 4003  # the ban from before the restart holds
    tab = await ChatClient.connect(b.port, "room", user="new")

    async def disconnected() -> bool:
        # The first request after the restart may race the reader's reconnection: ask again until B hears it.
        await call(a.api.port, "POST", "/api/users/new/disconnect", {})
        return tab.conn.close_code == 4003

    await eventually(disconnected, 10, "a disconnect through A closes the tab on B after the restart")
    status, _ = await call(a.api.port, "POST", "/api/rooms/room/mutes", {"user": "later", "seconds": 600})
    assert status == 201

    async def b_knows_the_mute() -> bool:
        _, body = await call(b.api.port, "GET", "/api/rooms/room/mutes")
        return [mute["user"] for mute in body["mutes"]] == ["later"]

    await eventually(b_knows_the_mute, 5, "a mute made after the restart reaches B's mirror")
    status, body = await call(b.api.port, "GET", "/api/bans")
    assert [ban["user"] for ban in body["bans"]] == ["old"]
