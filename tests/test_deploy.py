"""SIGTERM, and many processes on one Redis behind real nginx.

The clusters here are ``ops.cluster.Cluster``, the launcher's own code: a
redis-server from config/redis.conf, chat processes with distinct node ids,
and nginx from config/nginx.conf in front of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from tornado.httpclient import AsyncHTTPClient

from bus.message import id_key
from ops.cluster import Cluster
from ops.process_runner import free_port
from tests.client import ChatClient
from tests.helpers import chromium, eventually, handshake_request
from tests.processes import ServerProcess, launcher
from tests.resuming_client import ResumingClient

CLIENT_ADDRESS = "127.0.0.7"  # tests connect from here; nginx reaches the processes from 127.0.0.1


def node_events(cluster: Cluster, name: str) -> dict[str, list[dict[str, Any]]]:
    """Each node's JSON log events of one name, by node."""
    found: dict[str, list[dict[str, Any]]] = {}
    for node in cluster.nodes:
        assert node.service.log_path is not None
        lines = node.service.log_path.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        found[node.service.name] = [e for e in events if e.get("event") == name]
    return found


@pytest.mark.gen_test(timeout=60)
async def test_clients_on_both_processes_share_one_order_through_nginx(cluster: Cluster) -> None:
    http = AsyncHTTPClient()
    for path, code in (("/healthz", 200), ("/chat/", 200), ("/chat/lobby/", 200), ("/", 301)):
        response = await http.fetch(
            f"http://127.0.0.1:{cluster.port}{path}", raise_error=False, follow_redirects=False, request_timeout=5
        )
        assert response.code == code, path
    static = await http.fetch(f"http://127.0.0.1:{cluster.port}/static/room.js", request_timeout=5)
    assert b"since" in static.body  # served by nginx from static/

    clients = [await ChatClient.connect(cluster.port, "spread") for _ in range(6)]

    async def spread_over_both() -> bool:  # the processes write their logs on their own time
        return all(len(events) >= 2 for events in node_events(cluster, "ws.connect").values())

    await eventually(
        spread_over_both, 5, f"6 connections spread over both processes: {node_events(cluster, 'ws.connect')}"
    )

    await asyncio.gather(*(c.say(f"from-{i}-{k}") for k in range(10) for i, c in enumerate(clients)))
    streams = [await c.messages(60, timeout=20) for c in clients]
    first = [f["id"] for f in streams[0]]
    assert len(set(first)) == 60
    for stream in streams[1:]:
        assert [f["id"] for f in stream] == first


def _raw_handshake(port: int, origin: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT_ADDRESS, 0)) as sock:
        sock.sendall(handshake_request("/ws/chat/room/", f"127.0.0.1:{port}", {"Origin": origin}))
        return sock.recv(4096)


@pytest.mark.gen_test(timeout=60)
async def test_behind_nginx_origin_is_checked_and_logs_show_the_client(cluster: Cluster) -> None:
    loop = asyncio.get_running_loop()
    refused = await loop.run_in_executor(None, _raw_handshake, cluster.port, "http://evil.example")
    assert refused.startswith(b"HTTP/1.1 403")
    accepted = await loop.run_in_executor(None, _raw_handshake, cluster.port, f"http://127.0.0.1:{cluster.port}")
    assert accepted.startswith(b"HTTP/1.1 101")

    def handshakes() -> list[dict[str, Any]]:
        return [
            e
            for events in node_events(cluster, "http.request").values()
            for e in events
            if e["path"] == "/ws/chat/room/"
        ]

    deadline = time.monotonic() + 5
    while len(handshakes()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the processes write their logs on their own time
    requests = handshakes()
    assert sorted(e["status"] for e in requests) == [101, 403]
    assert {e["client"] for e in requests} == {CLIENT_ADDRESS}


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_closes_sockets_with_1001_and_exits_0(tmp_path: Path) -> None:
    server = ServerProcess([], tmp_path / "server.log")
    try:
        await server.start()
        clients = [await ChatClient.connect(server.port, "bye") for _ in range(3)]
        started = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.wait_closed(timeout=5) for c in clients))
        assert codes == [1001, 1001, 1001]
        exit_code = await asyncio.get_running_loop().run_in_executor(None, server.process.wait, 5)
        assert exit_code == 0 and time.monotonic() - started < 5
        assert [e["code"] for e in server.events("ws.disconnect")] == [1001, 1001, 1001]
    finally:
        server.kill()


@pytest.mark.gen_test(timeout=120)
async def test_rolling_restart_loses_nothing_and_doubles_nothing(cluster: Cluster) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await page.goto(f"http://127.0.0.1:{cluster.port}/chat/rolling/")
        await expect(page.locator("#connection-status")).to_have_attribute("data-state", "open", timeout=10_000)
        # A page that has shown nothing has nothing to resume from: moved before the
        # first message, it rightly reconnects without since (and was then, on a loaded
        # machine, never moved again). Once it shows a message, every reconnect resumes.
        first = await ChatClient.connect(cluster.port, "rolling")
        first.send({"message": "before the restart"})
        shown = page.locator("#chat-log li.message")
        await expect(shown).to_have_count(1, timeout=10_000)
        first.close()
        before = len(sockets)
        room_order = await _send_200_through_a_rolling_restart(cluster, already=1)
        await expect(shown).to_have_count(201, timeout=30_000)
        assert (await shown.evaluate_all("items => items.map(li => li.dataset.id)"))[1:] == room_order
        await expect(page.locator("#connection-status")).to_have_attribute("data-state", "open")
        moved = sockets[before:]
        assert moved and all("?since=" in url for url in moved), sockets  # it was moved, and resumed each time


async def _send_200_through_a_rolling_restart(cluster: Cluster, already: int = 0) -> list[str]:
    """Plain receivers and a sender through nginx while every process restarts in turn.

    Returns the room's order as the sender saw it, after checking that every
    receiver got all 200 messages, in that order, once each (after the
    ``already`` messages the room held, which they get as its history).
    """
    url = f"ws://127.0.0.1:{cluster.port}/ws/chat/rolling/"
    receivers = [ResumingClient(url) for _ in range(3)]
    sender = ResumingClient(url, user="sender")
    for client in (*receivers, sender):
        client.start()
        await client.wait_ready()

    async def send_steadily() -> None:
        for k in range(200):
            sender.say(f"m{k}", client_id=f"c{k}")
            await asyncio.sleep(0.03)  # pacing the sender across the restarts, not synchronising
        await sender.wait_acked(timeout=30)

    restart = asyncio.get_running_loop().run_in_executor(None, cluster.rolling_restart)
    await asyncio.gather(send_steadily(), restart)

    room_order = [f["id"] for f in (await sender.wait_for(already + 200, timeout=30))[already:]]
    assert [id_key(i) for i in room_order] == sorted(id_key(i) for i in room_order)
    for client in (*receivers, sender):
        frames = (await client.wait_for(already + 200, timeout=30))[already:]
        assert not [f for f in frames if f.get("duplicate")]
        assert [f["id"] for f in frames] == room_order  # all of them, in order, once each
        assert sorted(f["message"] for f in frames) == sorted(f"m{k}" for k in range(200))
        assert client.connects >= 2  # it really was moved by the restart
        await client.stop()
    assert sorted(sender.acks.values(), key=id_key) == room_order
    return room_order


def _process_tree(pid: int) -> set[int]:
    found = {pid}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in children:
            found |= _process_tree(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_the_launcher_starts_and_stops_a_3_process_cluster(tmp_path: Path) -> None:
    port = free_port()
    with launcher(port, "--processes", "3", "--run-dir", str(tmp_path)) as running:
        assert running.stdout is not None
        first = running.stdout.readline()  # the launcher prints its URL once everything is up
        assert f"http://127.0.0.1:{port}/" in first, first
        tree = _process_tree(running.pid)
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in tree if _alive(pid)}
        assert {"redis-server", "nginx"} <= names
        servers = [pid for pid in tree if b"server.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(servers) == 4  # the launcher and 3 chat processes
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200

        running.send_signal(signal.SIGTERM)
        assert running.wait(30) == 0
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling /proc, bounded by the deadline
        assert not [pid for pid in tree if _alive(pid)], "processes left behind"
