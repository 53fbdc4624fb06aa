"""A node more than one read behind catches up with everything, in order, then goes live.

The node's subscribed connection is cut (``CLIENT KILL TYPE pubsub``) while
the node is paused (SIGSTOP), so that it cannot come back before another
process has stored ``READ_COUNT`` + 44 messages in the room: once resumed, its
reader must read the room twice (a read returns at most ``READ_COUNT``) before
taking doorbells again. Its members must get every one of them in order, and
then the next live message. On one Redis and on a Redis Cluster (the room's
master).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from bus.redis.shard_reader import READ_COUNT
from ops.redis_cluster import LocalRedisCluster
from tests.client import ChatClient, ids, strictly_increasing
from tests.conftest import Spawn

BEHIND = READ_COUNT + 44


async def catch_up_past_one_read(spawn: Spawn, url: str, kill_pubsub: Any, *extra: str) -> None:
    reader = await spawn("node-reader", url, *extra)
    writer = await spawn("node-writer", url, *extra)
    members = [await ChatClient.connect(reader.port, "behind", user=f"m{i}") for i in range(2)]
    sender = await ChatClient.connect(writer.port, "behind", user="sender")
    sender.send({"message": "before", "client_id": "before"})
    await sender.recv_type("ack", skip=("message", "presence", "join", "leave"))
    for member in members:  # both nodes hear the room: its reader is caught up
        assert [m["message"] for m in await member.messages(1)] == ["before"]

    reader.pause()
    try:
        killed = kill_pubsub()
        assert killed >= 1  # the reader's subscribed connection (and the writer's, which comes back)
        for i in range(BEHIND):
            sender.send({"message": f"behind {i}", "client_id": f"b{i}"})
        acked = [await sender.recv_type("ack", skip=("message", "presence", "join", "leave")) for _ in range(BEHIND)]
    finally:
        reader.resume()

    # The first read's worth, then a live message: a reader that took the room for caught up
    # after one read delivers "live" next, with the rest missing, and the test fails at once.
    caught = {id(member): await member.messages(READ_COUNT, timeout=30) for member in members}
    sender.send({"message": "live", "client_id": "live"})
    for member in members:
        got = caught[id(member)]
        while got[-1]["message"] != "live":
            got += await member.messages(1)
        assert [m["message"] for m in got] == [f"behind {i}" for i in range(BEHIND)] + ["live"]
        assert ids(got[:-1]) == [a["id"] for a in acked] and strictly_increasing(ids(got))


@pytest.mark.gen_test(timeout=90)
async def test_a_redis_reader_more_than_one_read_behind_delivers_everything_then_live(
    spawn: Spawn, redis_db: str
) -> None:
    def kill_pubsub() -> int:
        with redis.Redis.from_url(redis_db, socket_timeout=5) as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))

    await catch_up_past_one_read(spawn, redis_db, kill_pubsub)


@pytest.mark.gen_test(timeout=120)
async def test_a_cluster_reader_more_than_one_read_behind_delivers_everything_then_live(
    spawn: Spawn, redis_cluster: LocalRedisCluster
) -> None:
    def kill_pubsub() -> int:
        killed = 0
        for port in redis_cluster.master_ports():
            with redis.Redis(port=port, password=redis_cluster.password, socket_timeout=5) as client:
                killed += int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
        return killed

    await catch_up_past_one_read(spawn, redis_cluster.url, kill_pubsub, "--redis-cluster", "--redis-prefix", "catchup")
