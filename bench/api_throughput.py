"""Server API publishes per second through Redis, beside WebSocket publishes in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/api_throughput.py [--seconds 5] [--rounds 3] [--senders 16]

Starts a redis-server (no persistence) and one ``server.py`` on it with the
API on, a member listening in the room, then alternates rounds of two
phases, each ``--seconds`` long with ``--senders`` concurrent senders that
each wait for their message to be accepted before sending the next:

- ``api``: POST /api/rooms/<room>/messages on kept-alive HTTP/1.1
  connections (a minimal client on asyncio streams: Tornado's own client
  opens a connection per request), each answered 201 once stored;
- ``ws``: room WebSockets sending ``{"message", "client_id"}`` and waiting
  for the ``ack``, the same path a page takes.

Prints publishes per second per round, the medians, and the ratio api/ws;
every message is counted again at the listening member, which must have
received all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-api-key-" + "0123456789abcdef" * 2
ROOM = "bench"
TEXT = "x" * 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", *args], stdout=subprocess.DEVNULL)
    return process, port


async def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)  # polling the port, bounded by the deadline
    raise RuntimeError(f"nothing listens on {port}")


class KeptAliveClient:
    """One HTTP/1.1 connection, one request at a time, answers read by Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


async def api_sender(port: int, until: float, count: list[int]) -> None:
    client = KeptAliveClient(port)
    path = f"/api/rooms/{ROOM}/messages"
    sender = uuid.uuid4().hex  # an idempotency key of its own for every message of the run
    for n in itertools.count():
        if time.monotonic() >= until:
            return
        status, answer = await client.post(
            path, json.dumps({"text": TEXT, "idempotency_key": f"{sender}-{n}"}).encode()
        )
        assert status == 201 and json.loads(answer)["duplicate"] is False, (status, answer)
        count[0] += 1


async def ws_sender(port: int, until: float, count: list[int], name: str) -> None:
    acks: asyncio.Queue[str] = asyncio.Queue()

    def on_frame(raw: str | bytes | None) -> None:
        if raw is not None and json.loads(raw).get("type") == "ack":
            acks.put_nowait("ack")

    request = HTTPRequest(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/")
    conn = await websocket_connect(request, on_message_callback=on_frame)
    for n in itertools.count():
        if time.monotonic() >= until:
            break
        await conn.write_message(json.dumps({"message": TEXT, "client_id": f"{name}-{n}"}))
        await asyncio.wait_for(acks.get(), 10)
        count[0] += 1
    conn.close()


async def phase(kind: str, port: int, api_port: int, seconds: float, senders: int, total: list[int]) -> float:
    count = [0]
    until = time.monotonic() + seconds
    started = time.monotonic()
    if kind == "api":
        await asyncio.gather(*(api_sender(api_port, until, count) for _ in range(senders)))
    else:
        await asyncio.gather(*(ws_sender(port, until, count, f"s{k}-{started}") for k in range(senders)))
    total[0] += count[0]
    return count[0] / (time.monotonic() - started)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="api-bench-"))
    redis, redis_port = start_redis(workdir)
    port, api_port = free_port(), free_port()
    env = {**os.environ, "CHAT_COOKIE_SECRET": "bench-cookie-secret-" + "x" * 20, "CHAT_API_KEYS": KEY}
    server_args = ["--port", str(port), "--api-port", str(api_port), "--redis-url", f"redis://127.0.0.1:{redis_port}"]
    server_args += ["--join-rate", "0", "--room-create-rate", "0"]
    server_args += ["--rate-limit", "0", "--client-rate-limit", "0", "--api-rate-limit", "0", "--log-format", "json"]
    with (workdir / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, str(ROOT / "server.py"), *server_args], env=env, stdout=log)  # noqa: ASYNC220
    received = [0]
    member_closed: list[int | None] = []
    try:
        await wait_port(redis_port)
        await wait_port(api_port)

        def on_member_frame(raw: str | bytes | None) -> None:
            if raw is None:
                member_closed.append(member.close_code)  # dropped (too slow a reader?): counts stop here
            elif json.loads(raw).get("type") == "message":
                received[0] += 1

        member = await websocket_connect(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/", on_message_callback=on_member_frame)
        rates: dict[str, list[float]] = {"ws": [], "api": []}
        total = [0]
        for round_ in range(args.rounds):
            for kind in ("ws", "api") if round_ % 2 == 0 else ("api", "ws"):  # alternated: drift falls on both
                rates[kind].append(await phase(kind, port, api_port, args.seconds, args.senders, total))
        deadline = time.monotonic() + 60
        while received[0] < total[0] and not member_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the member's last deliveries, bounded by the deadline
        member.close()
    finally:
        server.terminate()
        server.wait(10)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    ratio = medians["api"] / medians["ws"]
    return {
        "rates": rates,
        "medians": medians,
        "ratio_api_ws": ratio,
        "sent": total[0],
        "received": received[0],
        "member_closed": member_closed[0] if member_closed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--senders", type=int, default=16)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for kind in ("ws", "api"):
        rounds = ", ".join(f"{rate:.0f}" for rate in result["rates"][kind])
        print(f"{kind:>4}: median {result['medians'][kind]:.0f} publishes/s (rounds: {rounds})")
    print(
        f"api/ws: {result['ratio_api_ws']:.2f}; accepted {result['sent']}, at the listening member {result['received']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
