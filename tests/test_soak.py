"""A soak: a deployment under churn, faults and hostile clients, then nothing lost, nothing twice, no growth.

Through the launcher's own deployment (ops.cluster: redis-server with its
append-only file, two server.py processes, nginx in front): a few hundred
clients in twenty rooms, joining and leaving all the time, from many loopback
addresses (as many users would, so the per-address limits see real spread);
one reader that stops reading; one client sending junk. Midway a chat
process is killed with SIGKILL and started again, and Redis is restarted.

At the end: every message a sender got an ``ack`` for reached every client
that stayed (directly or, after a drop, by resuming with ``since``), none
arrived twice, no junk reached anyone, and each process's RSS is within 10%
of what it was after warm-up.

About 60 s by default; ``SOAK_SECONDS=600 make test`` (or pytest) runs it longer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from bus.message import id_key
from ops.cluster import Cluster
from tests.conftest import SECRET
from tests.resuming_client import ResumingClient

SECONDS = float(os.environ.get("SOAK_SECONDS", "40"))  # of traffic; setup and checks come on top
ROOMS = [f"soak{n}" for n in range(20)]
STAYERS_PER_ROOM = 4
CHURNERS = 40  # connections coming and going at any time
ADDRESSES = [f"127.0.{n // 250 + 1}.{n % 250 + 1}" for n in range(60)]  # the people
JUNK_ADDRESS, SLOW_ADDRESS = "127.0.9.1", "127.0.9.2"  # the two hostile clients, apart from them
RSS_GROWTH = 0.10
TIMEOUT = 10.0
_names = itertools.count(1)


class SoakClient(ResumingClient):
    """A visitor: from one of the people's addresses, pausing with jitter, retrying whatever was refused.

    It keeps every message it got by id (to find the lost and the doubled), and the order they came in.
    """

    connect_timeout = TIMEOUT
    first_delay, max_delay = 0.1, 2.0

    def __init__(self, port: int, room: str, address: str) -> None:
        self.room = room
        self.user = f"u{next(_names)}"
        url = f"ws://127.0.0.1:{port}/ws/chat/{quote(room)}/"
        super().__init__(url, user=self.user, secret=SECRET, address=address)
        self.texts: dict[str, str] = {}  # id -> text
        self.order: list[str] = []
        self.duplicates = 0
        self._said = itertools.count()

    def say_next(self, text: str) -> None:
        self.say(text, client_id=f"{self.user}-{next(self._said)}")

    async def acked(self, timeout: float) -> bool:
        try:
            await self.wait_acked(timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _record(self, frame: dict[str, Any]) -> None:
        if frame["id"] in self.texts:
            self.duplicates += 1
            return
        self.texts[frame["id"]] = frame["message"]
        self.order.append(frame["id"])
        self._advance(frame["id"])

    def _refused(self, frame: dict[str, Any]) -> None:
        asyncio.get_running_loop().call_later(0.5 + random.random(), self._resend, frame["client_id"])

    def _pause(self, delay: float) -> float:
        return delay + random.random() * delay  # jitter: a restart's visitors do not all come back at once


class Soak:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.port = cluster.port
        self.stayers: list[SoakClient] = []
        self.senders: list[SoakClient] = []  # everyone who sent, stayers and churners
        self.churned = 0
        self.junk_sent = 0
        self.stop = asyncio.Event()
        self.events: list[str] = []

    def address(self) -> str:
        return random.choice(ADDRESSES)

    async def start_stayers(self) -> None:
        for room in ROOMS:
            for _ in range(STAYERS_PER_ROOM):
                client = SoakClient(self.port, room, self.address())
                client.start()
                self.stayers.append(client)
        await asyncio.gather(*(c.wait_ready(60) for c in self.stayers))
        self.senders += self.stayers

    async def stayer_traffic(self, client: SoakClient) -> None:
        count = 0
        while not self.stop.is_set():
            client.say_next(f"{client.user} says {count}")
            count += 1
            await asyncio.sleep(1.0 + random.random())  # a person's pace, not a synchronisation

    async def churn(self) -> None:
        while not self.stop.is_set():
            client = SoakClient(self.port, random.choice(ROOMS), self.address())
            client.start()
            try:
                await client.wait_ready(20)
                if random.random() < 0.5:
                    self.senders.append(client)
                    client.say_next(f"{client.user} passing through")
                    await client.acked(20)
                await asyncio.sleep(random.uniform(0.2, 2.0))  # how long a visitor stays
            except asyncio.TimeoutError:
                pass
            finally:
                await client.stop()
                self.churned += 1

    async def junk(self) -> None:
        while not self.stop.is_set():
            try:
                request = HTTPRequest(
                    f"ws://127.0.0.1:{self.port}/ws/chat/{ROOMS[1]}/",
                    network_interface=JUNK_ADDRESS,
                    request_timeout=TIMEOUT,
                )
                conn = await asyncio.wait_for(websocket_connect(request), TIMEOUT)
                while not self.stop.is_set() and conn.protocol is not None:
                    for payload in ("{not json", '{"message": 5}', "[1,2]", '{"message": ""}', "junk\x00"):
                        conn.write_message(payload)
                        self.junk_sent += 1
                    conn.write_message(b"\x00\xff", binary=True)
                    await asyncio.sleep(0.05)  # a steady drizzle of junk
                conn.close()
            except Exception:  # refused, closed for junk (1008), 502: junk keeps coming, as an attacker's would
                await asyncio.sleep(0.2)

    async def slow_reader(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((SLOW_ADDRESS, 0))
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", self.port)), 5)
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws/chat/{ROOMS[0]}/ HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        return sock  # and never read again

    async def faults(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(SECONDS * 0.15)
        node = self.cluster.nodes[1]
        node.service.stop(signal.SIGKILL)
        self.events.append(f"{time.strftime('%X')} SIGKILL {node.service.name}")
        await loop.run_in_executor(None, self._restart_node, node)
        await asyncio.sleep(SECONDS * 0.15)
        redis = self.cluster.redis
        assert redis is not None
        await loop.run_in_executor(None, self._restart_redis, redis)
        self.events.append(f"{time.strftime('%X')} Redis restarted")

    def _restart_node(self, node: Any) -> None:
        node.service.start()
        self.cluster._wait_healthy(node)

    def _restart_redis(self, redis: Any) -> None:
        redis.stop(signal.SIGTERM)  # it writes its append-only file out as it goes
        redis.start()
        port = int(str(self.cluster.redis_url).rsplit(":", 1)[1].split("/")[0])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)  # waiting for the port, bounded by the deadline
        raise AssertionError("Redis did not come back")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def node_rss(cluster: Cluster) -> dict[str, int]:
    return {
        node.service.name: rss_kib(node.service.process.pid)  # type: ignore[union-attr]
        for node in cluster.nodes
    }


@pytest.mark.timeout(SECONDS + 180)  # pytest.ini's 120 s is for ordinary tests
@pytest.mark.gen_test(timeout=SECONDS + 150)
async def test_soak_nothing_acknowledged_is_lost_or_doubled_and_memory_stays_flat(cluster: Cluster) -> None:
    soak = Soak(cluster)
    await soak.start_stayers()
    slow = await soak.slow_reader()
    tasks = [asyncio.ensure_future(soak.stayer_traffic(c)) for c in soak.stayers]
    tasks += [asyncio.ensure_future(soak.churn()) for _ in range(CHURNERS)]
    tasks.append(asyncio.ensure_future(soak.junk()))
    faults = asyncio.ensure_future(soak.faults())
    try:
        await asyncio.sleep(SECONDS * 0.5)  # the faults happen in this first half
        await faults
        await asyncio.sleep(SECONDS * 0.1)  # warm-up after the restarts
        warm = node_rss(cluster)
        await asyncio.sleep(SECONDS * 0.4)
        end = node_rss(cluster)
    finally:
        soak.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        slow.close()

    # The stayers' last messages, acknowledged (or given up) before the checks; a visitor who left
    # with a message unacknowledged gave it up (it may still have been stored and delivered).
    await asyncio.gather(*(client.acked(20) for client in soak.stayers))
    acked: dict[str, dict[str, str]] = {room: {} for room in ROOMS}
    for client in soak.senders:
        for message_id in client.acks.values():
            acked[client.room][message_id] = client.room
    total_acked = sum(len(ids) for ids in acked.values())

    async def everyone_has_everything() -> None:
        while any(set(acked[c.room]) - set(c.texts) for c in soak.stayers):
            await asyncio.sleep(0.1)  # polling the clients' own lists, bounded by wait_for

    try:
        await asyncio.wait_for(everyone_has_everything(), 30)
    except asyncio.TimeoutError:
        pass  # reported below, message by message
    lost = sum(len(set(acked[c.room]) - set(c.texts)) for c in soak.stayers)
    doubled = sum(c.duplicates for c in soak.stayers)
    junk_seen = sum(
        1 for c in soak.stayers for text in c.texts.values() if "says" not in text and "passing through" not in text
    )
    out_of_order = sum(1 for c in soak.stayers if [id_key(i) for i in c.order] != sorted(id_key(i) for i in c.order))
    for client in soak.stayers:
        await client.stop()
    growth = {name: (end[name] - warm[name]) / warm[name] for name in warm}
    figures = {
        "seconds": SECONDS,
        "rooms": len(ROOMS),
        "stayers": len(soak.stayers),
        "churned": soak.churned,
        "acked": total_acked,
        "lost": lost,
        "doubled": doubled,
        "junk_sent": soak.junk_sent,
        "junk_delivered": junk_seen,
        "out_of_order": out_of_order,
        "stayer_reconnects": sum(c.connects - 1 for c in soak.stayers),
        "incomplete_resumes": sum(c.incomplete_resumes for c in soak.stayers),
        "rss_warm_kib": warm,
        "rss_end_kib": end,
        "rss_growth": {k: round(v, 3) for k, v in growth.items()},
        "faults": soak.events,
    }
    print("soak figures:", json.dumps(figures))
    assert total_acked > 0 and soak.churned >= 100, figures
    assert (lost, doubled, junk_seen, out_of_order) == (0, 0, 0, 0), figures
    assert sum(c.connects - 1 for c in soak.stayers) > 0, figures  # the SIGKILL really moved some of them
    assert all(value <= RSS_GROWTH for value in growth.values()), figures
