"""The Redis bus on a real local Redis Cluster (3 masters, 3 replicas).

The protocol and presence suites also run on the session's cluster (the
``cluster`` backend of conftest). Here: rooms spread over the masters through
several processes, a master killed under a sender, and key prefixes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis

from ops.process_runner import free_port
from ops.redis_cluster import LocalRedisCluster
from tests.client import ChatClient, ids, strictly_increasing
from tests.conftest import Spawn
from tests.processes import launcher


def cluster_args(cluster: LocalRedisCluster, prefix: str, *extra: str) -> list[str]:
    """One address sends everything here: the per-address rate limit is not what these tests are about."""
    return [cluster.url, "--redis-cluster", "--redis-prefix", prefix, "--client-rate-limit", "0", *extra]


async def keys_on(port: int, pattern: str) -> list[str]:
    async with aioredis.Redis(port=port, decode_responses=True, socket_timeout=5) as node:
        return [key async for key in node.scan_iter(match=pattern, count=1000)]


@pytest.mark.gen_test(timeout=120)
async def test_24_rooms_through_two_processes_keep_one_order_and_spread_over_every_master(
    spawn: Spawn, redis_cluster: LocalRedisCluster
) -> None:
    url, *args = cluster_args(redis_cluster, "spread")
    one, two = await spawn("c1", url, *args), await spawn("c2", url, *args)
    rooms = [f"room{k}" for k in range(24)]
    pairs = [
        (await ChatClient.connect(one.port, room, user="ann"), await ChatClient.connect(two.port, room, user="bob"))
        for room in rooms
    ]

    async def talk(client: ChatClient, prefix: str) -> None:
        for k in range(10):
            await client.say(f"{prefix}{k}")

    await asyncio.gather(*(talk(client, name) for pair in pairs for client, name in zip(pair, ("a", "b"))))
    for room, (ann, bob) in zip(rooms, pairs):
        seen_by_ann, seen_by_bob = await ann.messages(20), await bob.messages(20)
        assert ids(seen_by_ann) == ids(seen_by_bob), room  # one order per room, on both processes
        assert strictly_increasing(ids(seen_by_ann))
        assert sorted(f["message"] for f in seen_by_ann) == sorted(f"{p}{k}" for p in "ab" for k in range(10))

    masters = redis_cluster.master_ports()
    assert len(masters) == 3
    assert {redis_cluster.master_of(f"spread:{{{room}}}") for room in rooms} == masters
    for port in masters:  # the streams are really there, each room's on its own master
        streams = [key for key in await keys_on(port, "spread:{room*}") if key.count(":") == 1]
        assert streams and all(redis_cluster.master_of(key) == port for key in streams)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A cluster of this test's own, to kill a master of (the session's must stay whole)."""
    cluster = LocalRedisCluster(tmp_path / "cluster")
    yield cluster
    cluster.stop()


async def send_until_acked(client: ChatClient, text: str, client_id: str, deadline: float) -> tuple[str, float]:
    """Send and resend with the same client_id (as the room page does) until the ack; (id, when)."""
    while time.monotonic() < deadline:
        await client.say(text, client_id=client_id)
        while True:
            frame = await client.recv(timeout=10)
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                break
        if frame["type"] == "ack":
            return frame["id"], time.monotonic()
        assert frame["error"] == "unavailable", frame
        await asyncio.sleep(0.1)  # the page's resend backoff; bounded by the deadline
    raise AssertionError(f"{client_id} never acknowledged")


@pytest.mark.gen_test(timeout=180)
async def test_a_master_killed_under_a_sender_loses_no_acknowledged_message(
    spawn: Spawn, own_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    await asyncio.to_thread(own_cluster.start)
    url, *args = cluster_args(own_cluster, "fo", "--redis-wait-replicas", "1", "--rate-limit", "0")
    server = await spawn("f1", url, *args)
    room = "failover"
    master = own_cluster.master_of(f"fo:{{{room}}}")
    sender = await ChatClient.connect(server.port, room, user="ann")

    acked: list[tuple[str, str, float]] = []  # (client_id, id, when)
    restarted: asyncio.Task[None] | None = None
    deadline = time.monotonic() + 120
    for k in range(150):
        if k == 50:
            await asyncio.to_thread(own_cluster.node(master).kill)
            killed_at = time.monotonic()

            async def start_again() -> None:
                await asyncio.sleep(5)  # the scenario: the dead node comes back 5 s later
                await asyncio.to_thread(own_cluster.restart_node, master)

            restarted = asyncio.ensure_future(start_again())
        message_id, when = await send_until_acked(sender, f"m{k}", f"c{k}", deadline)
        acked.append((f"c{k}", message_id, when))
    assert restarted is not None
    await restarted
    await asyncio.to_thread(own_cluster.wait_ok)

    reader = await ChatClient.connect(server.port, room, user="eve", since="0-0")
    stored = [(frame["message"], frame["id"]) for frame in reader.history]
    assert [text for text, _ in stored] == [f"m{k}" for k in range(150)]  # each once, in the order sent
    assert [i for _, i in stored] == [i for _, i, _ in acked]  # under the id its sender was told
    assert strictly_increasing([i for _, i in stored])
    assert own_cluster.master_of(f"fo:{{{room}}}") != master  # it really failed over

    pause = max(b[2] - a[2] for a, b in zip(acked, acked[1:]))
    after_kill = [when for _, _, when in acked if when > killed_at]
    print(
        f"failover: longest pause between acks {pause:.2f} s; first ack after the kill "
        f"{after_kill[0] - killed_at:.2f} s later"
    )
    assert pause < 30  # generous: node timeout 2 s, plus the election and the bus's backoff


@pytest.mark.gen_test(timeout=60)
async def test_two_prefixes_on_one_redis_do_not_see_each_other(spawn: Spawn, redis_db: str) -> None:
    blue = await spawn("blue", redis_db, "--redis-prefix", "blue")
    green = await spawn("green", redis_db, "--redis-prefix", "green")
    on_blue = await ChatClient.connect(blue.port, "shared", user="ann")
    on_green = await ChatClient.connect(green.port, "shared", user="bob")
    await on_blue.say("for blue")
    await on_green.say("for green")
    assert [f["message"] for f in await on_blue.messages(1)] == ["for blue"]
    assert [f["message"] for f in await on_green.messages(1)] == ["for green"]
    await on_blue.say("blue marker")
    assert [f["message"] for f in await on_blue.messages(1)] == ["blue marker"]  # green's never came
    again = await ChatClient.connect(green.port, "shared", user="carl")
    assert [f["message"] for f in again.history] == ["for green"]
    members = await again.recv_type("presence")
    assert [m["user"] for m in members["members"]] == ["bob", "carl"]

    async with aioredis.Redis.from_url(redis_db, decode_responses=True) as direct:
        keys: Any = [key async for key in direct.scan_iter(count=1000)]
    assert keys and all(key.startswith(("blue:", "green:")) for key in keys), keys
    assert any(key.startswith("blue:") and "shared" in key for key in keys)
    assert any(key.startswith("green:") and "shared" in key for key in keys)


@pytest.mark.gen_test(timeout=120)
async def test_the_launcher_runs_the_chat_on_a_local_redis_cluster(tmp_path: Path) -> None:
    """``server.py cluster --redis-cluster``: 3 masters and 3 replicas, unprivileged, behind a password."""
    port = free_port()
    with launcher(port, "--processes", "2", "--run-dir", str(tmp_path), "--redis-cluster") as running:
        assert running.stdout is not None
        first = await asyncio.to_thread(running.stdout.readline)  # printed once everything is up
        assert f"http://127.0.0.1:{port}/" in first, first
        nodes = [pid for pid in _process_tree(running.pid) if _comm(pid) == "redis-server"]
        assert len(nodes) == 6
        if os.geteuid() == 0:  # the launcher's rule: no service of a root launcher stays root
            assert all(os.stat(f"/proc/{pid}").st_uid != 0 for pid in nodes)
        ann = await ChatClient.connect(port, "spread", user="ann")
        bob = await ChatClient.connect(port, "spread", user="bob")
        await ann.say("through the cluster")
        assert [f["message"] for f in await bob.messages(1)] == ["through the cluster"]
        ann.close()
        bob.close()
        running.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(running.wait, 30) == 0
        assert not [pid for pid in nodes if _comm(pid) == "redis-server"], "cluster nodes left behind"


def _process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
