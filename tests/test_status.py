"""``server.py status`` against real ``server.py`` processes on a real Redis, and ``/api/cluster`` on the Redis bus.

The processes write their status records every 0.2 s; the status command
reads them and each process's lag from Redis. A process paused with SIGSTOP
under traffic goes silent, its lag grows while the other's stays at zero,
and the exit status says so; resumed, it catches up and the status is 0;
stopped with SIGTERM, it is shown as stopped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api_kit import API_KEY, api_settings, call
from tests.client import ChatClient
from tests.conftest import Spawn
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = "0.2"
DEADLINE = 30.0


async def status(redis_url: str, *args: str) -> tuple[int, str, str]:
    """Run ``server.py status``: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "status",
        "--redis-url",
        redis_url,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status_until(redis_url: str, check: Any, what: str) -> tuple[int, dict[str, Any]]:
    """``status --json`` again until ``check(code, view)`` holds, or fail with the last view."""
    deadline = time.monotonic() + DEADLINE
    while True:
        code, out, err = await status(redis_url, "--json")
        view = json.loads(out) if out else {}
        if check(code, view):
            return code, view
        assert time.monotonic() < deadline, f"never {what}: {code} {out} {err}"
        await asyncio.sleep(0.1)  # polling the processes' next records, bounded by the deadline


def by_node(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {process["node"]: process for process in view.get("processes", [])}


async def keep_talking(client: ChatClient, stop: asyncio.Event) -> int:
    """Messages one after another (each waits for its own echo) until ``stop``."""
    sent = 0
    while not stop.is_set():
        await client.say(f"tick {sent}")
        await client.recv_chat()
        sent += 1
    return sent


@pytest.mark.gen_test(timeout=150)
async def test_status_shows_the_processes_and_a_paused_ones_lag(spawn: Spawn, redis_db: str) -> None:
    extra = ("--status-interval", INTERVAL, "--presence-timeout", "120")
    a, b = await spawn("node-a", redis_db, *extra), await spawn("node-b", redis_db, *extra)
    ann = await ChatClient.connect(a.port, "hot", user="ann")
    bob = await ChatClient.connect(b.port, "hot", user="bob")
    zoe = await ChatClient.connect(b.port, "calm", user="zoe")

    def both_ready(code: int, view: dict[str, Any]) -> bool:
        nodes = by_node(view)
        return code == 0 and set(nodes) == {"node-a", "node-b"} and nodes["node-b"]["connections"] == 2

    code, view = await status_until(redis_db, both_ready, "both ready")
    nodes = by_node(view)
    assert nodes["node-a"]["address"] == f"127.0.0.1:{a.port}" and nodes["node-b"]["address"] == f"127.0.0.1:{b.port}"
    assert nodes["node-a"]["rooms"] == 1 and nodes["node-b"]["rooms"] == 2
    rooms = {room["room"]: room for room in view["rooms"]}
    assert rooms["hot"]["users"] == 2 and rooms["hot"]["connections"] == 2 and rooms["calm"]["users"] == 1
    code, text, _ = await status(redis_db)
    assert code == 0 and "node-a" in text and "node-b" in text and "2 of 2 processes ready" in text, text

    stop = asyncio.Event()
    talking = asyncio.ensure_future(keep_talking(ann, stop))
    b.pause()
    try:

        def b_behind(code: int, view: dict[str, Any]) -> bool:
            nodes = by_node(view)
            lag, a = nodes.get("node-b", {}).get("lag", {}), nodes.get("node-a", {})
            # node-a delivers the same room all along: nothing behind past the grace
            a_current = a.get("state") == "ready" and a["lag"]["behind"] == 0
            return code == 1 and a_current and lag.get("behind", 0) > 0 and lag.get("seconds", 0) > 0

        code, view = await status_until(redis_db, b_behind, "node-b behind, node-a not")
        assert by_node(view)["node-b"]["state"] == "silent"
        code, text, _ = await status(redis_db)
        assert code == 1 and "silent" in text
    finally:
        b.resume()
        stop.set()
    assert await talking > 0

    def caught_up(code: int, view: dict[str, Any]) -> bool:
        return code == 0 and all(p["lag"]["behind"] == 0 for p in view["processes"])

    await status_until(redis_db, caught_up, "node-b caught up")
    for client in (ann, bob, zoe):
        client.close()
    # Stopped on purpose (SIGTERM), a process says so, until the janitor forgets it.
    assert await b.stop() == 0
    code, view = await status_until(redis_db, lambda code, view: code == 1, "node-b stopped")
    assert by_node(view)["node-b"]["state"] == "stopped" and by_node(view)["node-a"]["state"] == "ready"


@pytest.mark.gen_test(timeout=60)
async def test_status_of_an_unreachable_redis_fails_with_exit_status_2() -> None:
    code, out, err = await status(f"redis://127.0.0.1:{free_port()}/0", "--timeout", "0.5")
    assert code == 2 and out == "" and "cannot read Redis" in err, (out, err)


@pytest.mark.gen_test(timeout=60)
async def test_status_with_no_process_is_not_ok(redis_db: str) -> None:
    code, out, _ = await status(redis_db)
    assert code == 1 and "0 of 0 processes ready" in out, out


@pytest.mark.parametrize("backend", ["redis", "cluster"])
@pytest.mark.gen_test(timeout=60)
async def test_the_api_lists_every_process_of_the_redis_bus(make_server: Any) -> None:
    one = await make_server(**api_settings(node_id="one", status_interval=0.1))
    two = await make_server(node_id="two", status_interval=0.1)
    member = await ChatClient.connect(two.port, "lobby", user="ann")
    deadline = time.monotonic() + DEADLINE
    while True:
        code, body = await call(one.api.port, "GET", "/api/cluster", key=API_KEY)
        nodes = by_node(body)
        if set(nodes) == {"one", "two"} and nodes["two"]["connections"] == 1:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)  # the next records, bounded by the deadline
    assert code == 200 and body["bus"] == "redis"
    assert nodes["two"]["address"] == f"127.0.0.1:{two.port}" and nodes["one"]["api"] == f"127.0.0.1:{one.api.port}"
    assert [room["room"] for room in body["rooms"]] == ["lobby"]
    assert (await call(one.api.port, "GET", "/api/cluster", key=None))[0] == 401
    # server.py status reads the same from Redis (one Redis, or a Redis Cluster through any node)
    settings = one.settings
    flags = ["--redis-prefix", settings.redis_prefix] + (["--redis-cluster"] if settings.redis_cluster else [])
    code, out, err = await status(settings.redis_url or "", "--json", *flags)
    assert code == 0 and set(by_node(json.loads(out))) == {"one", "two"}, (out, err)
    member.close()
