"""Handshake cost of token mode: cookie vs HS256 vs RS256 tokens, the same scenario in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/token_handshakes.py [--reconnects 2000] [--rounds 3]

Three ``server.py`` processes on the in-process bus, started together and
kept for the whole run: one without token settings (the lobby's signed name
cookie), one with an HS256 secret, one with an RS256 public key. The
scenario, run on each in turn, round after round: ``--reconnects``
WebSocket handshakes into one room holding 20 messages, ``--concurrency`` at
a time (a mass reconnect), each opening, reading the replay up to ``ready``
and closing; every handshake carries its own credential (a cookie per user,
a token per handshake, signed before the clock starts, 200 users). Measured
per run: the wall time, the server's CPU time (utime + stime from
/proc/<pid>/stat) per handshake, and failures (anything but a ``ready``).
Printed as JSON lines and a summary table of medians, with the ratio of each
token mode to the cookie handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ops.process_runner import free_port  # noqa: E402

COOKIE_SECRET = secrets.token_urlsafe(32)
TOKEN_SECRET = secrets.token_urlsafe(32)
USERS = 200
HISTORY = 20
ROOM = "bench"
TICKS = os.sysconf("SC_CLK_TCK")
TIMEOUT = 10.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Server:
    def __init__(self, mode: str, public_key: Path) -> None:
        self.mode = mode
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_") and k != "REDIS_URL"}
        env["CHAT_COOKIE_SECRET"] = COOKIE_SECRET
        args = ["--port", str(self.port), "--node-id", f"bench-{mode}", "--log-format", "json"]
        args += ["--max-connections-per-client", "10000", "--rate-limit", "0", "--history", str(HISTORY)]
        args += ["--join-rate", "0", "--room-create-rate", "0"]  # its handshakes all come from 127.0.0.1
        if mode == "hs256":
            env["CHAT_TOKEN_SECRET"] = TOKEN_SECRET
        elif mode == "rs256":
            args += ["--token-public-key", str(public_key)]
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_healthy(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{self.port}/healthz", raise_error=False)
                if response.code == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.mode} server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def credentials(mode: str, count: int, private_key: Any) -> list[str]:
    """One Cookie header per handshake: a signed name, or a fresh token (signed before the clock starts)."""
    if mode == "cookie":
        names = [create_signed_value(COOKIE_SECRET, "chat_user", f"u{k % USERS}").decode() for k in range(USERS)]
        return [f"chat_user={names[k % USERS]}" for k in range(count)]
    exp = int(time.time()) + 3600
    key, algorithm = (TOKEN_SECRET, "HS256") if mode == "hs256" else (private_key, "RS256")
    return [
        "chat_token=" + jwt.encode({"sub": f"u{k % USERS}", "name": f"u{k % USERS}", "exp": exp + k}, key, algorithm)
        for k in range(count)
    ]


async def handshake(port: int, cookie: str) -> bool:
    """Open, read up to ready, close: True when ready came."""
    request = HTTPRequest(
        f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/",
        headers={"Cookie": cookie},
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    try:
        conn = await asyncio.wait_for(websocket_connect(request), TIMEOUT)
    except Exception:
        return False
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
            if raw is None:
                return False
            if b'"type":"ready"' in (raw.encode() if isinstance(raw, str) else raw):
                return True
    except Exception:
        return False
    finally:
        conn.close()


async def reconnects(server: Server, cookies: list[str], concurrency: int) -> dict[str, Any]:
    pending = iter(cookies)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for cookie in pending:
            if not await handshake(server.port, cookie):
                failures += 1

    cpu_before, started = cpu_seconds(server.process.pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu_before
    return {
        "mode": server.mode,
        "handshakes": len(cookies),
        "failures": failures,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_handshake": round(cpu / len(cookies) * 1e6),
    }


async def fill_room(port: int) -> None:
    cookie = "chat_user=" + create_signed_value(COOKIE_SECRET, "chat_user", "filler").decode()
    conn = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/", headers={"Cookie": cookie}))
    for k in range(HISTORY):
        conn.write_message(json.dumps({"message": f"history line {k} " + "x" * 60}))
    seen = 0
    while seen < HISTORY:
        raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
        if raw is not None and '"type":"message"' in str(raw):
            seen += 1
    conn.close()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    work = Path(tempfile.mkdtemp(prefix="token-bench-"))
    public_key = work / "public.pem"
    public_key.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    servers = [Server(mode, public_key) for mode in ("cookie", "hs256", "rs256")]
    results: list[dict[str, Any]] = []
    try:
        for server in servers:
            await server.wait_healthy()
        for server in servers:  # the same 20 messages of history in each, then a warm-up batch
            if server.mode == "cookie":
                await fill_room(server.port)
            else:
                await fill_room_with_token(server.port, private_key if server.mode == "rs256" else None)
            await reconnects(server, credentials(server.mode, 200, private_key), args.concurrency)  # warm-up
        for round_ in range(args.rounds):
            for server in servers:
                cookies = credentials(server.mode, args.reconnects, private_key)
                result = await reconnects(server, cookies, args.concurrency)
                result["round"] = round_ + 1
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        for server in servers:
            server.stop()
    return results


async def fill_room_with_token(port: int, private_key: Any) -> None:
    key, algorithm = (private_key, "RS256") if private_key is not None else (TOKEN_SECRET, "HS256")
    token = jwt.encode({"sub": "filler", "exp": int(time.time()) + 600}, key, algorithm)
    conn = await websocket_connect(
        HTTPRequest(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/", headers={"Cookie": f"chat_token={token}"})
    )
    for k in range(HISTORY):
        conn.write_message(json.dumps({"message": f"history line {k} " + "x" * 60}))
    seen = 0
    while seen < HISTORY:
        raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
        if raw is not None and '"type":"message"' in str(raw):
            seen += 1
    conn.close()


def summary(results: list[dict[str, Any]]) -> str:
    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["mode"] == mode)

    base = median("cookie", "cpu_us_per_handshake")
    lines = [
        "| mode | server CPU per handshake (median, µs) | vs cookie | wall per batch (median, s) | failures (all) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in ("cookie", "hs256", "rs256"):
        cpu = median(mode, "cpu_us_per_handshake")
        failures = sum(r["failures"] for r in results if r["mode"] == mode)
        lines.append(f"| {mode} | {cpu:.0f} | {cpu / base:.2f}x | {median(mode, 'wall_s'):.2f} | {failures} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reconnects", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
