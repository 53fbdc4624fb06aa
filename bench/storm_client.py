"""The clients of bench/storm.py: room members on raw sockets that reconnect and resume as the room page does.

One process of ``--clients`` members (bench/storm.py starts several), each
from a loopback address of its own (127/8 is all routed to lo), so that nginx's
``$remote_addr`` and the server's per-address budgets see distinct people.
Each member holds a signed name cookie, so it is the same user across
reconnects (presence, and the resend of an unacknowledged ``client_id``).

The reconnect rule is static/room.js's: after a close, wait
``min(10 s, 0.5 s * 2**attempt) * (0.5 + random() / 2)``, ``attempt`` counting
the tries since the last ``ready``; reconnect with ``?since=<newest id seen>``;
after ``ready``, resend every message not yet acknowledged.

The deployment's cookie secret comes from CHAT_COOKIE_SECRET. Commands on
stdin, one a line: ``traffic`` (senders start), ``stop`` (senders
stop making new messages; unacknowledged ones are still resent), ``dump``
(print every member's record as one JSON line and exit). A status line
(JSON) goes to stdout every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import struct
import sys
import threading
import time
from collections import Counter
from typing import Any

from tornado.web import create_signed_value

USER_COOKIE = "chat_user"  # handlers/identity.py
STATUS_EVERY = 0.25
RESEND_AFTER = 3.0  # the page resends what has waited this long without an ack


def id_key(message_id: str) -> tuple[int, int]:
    ms, seq = message_id.split("-")
    return int(ms), int(seq)


def backoff(attempt: int) -> float:
    """static/room.js's retryLater, in seconds."""
    return min(10000, 500 * 2**attempt) * (0.5 + random.random() / 2) / 1000


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame; a zero mask key leaves the payload as it is (RFC 6455 allows any key)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Member:
    """One person's page in one room."""

    def __init__(self, k: int, room: str, port: int, secret: str, sender: bool, period: float) -> None:
        self.k, self.room, self.port, self.sender, self.period = k, room, port, sender, period
        self.address = f"127.{10 + k // 62500}.{k // 250 % 250}.{k % 250 + 1}"
        cookie = create_signed_value(secret, USER_COOKIE, f"u{k}").decode()
        self.cookie = f'{USER_COOKIE}="{cookie}"'
        self.start: str | None = None  # last_id of the first ready: what is counted comes after it
        self.first_ready = False
        self.last_id: str | None = None
        self.ids: Counter[str] = Counter()  # message ids received after start, replays included
        self.closes: list[float] = []
        self.readies: list[float] = []
        self.attempts: list[tuple[float, float, float]] = []  # (connect, connected, handshake answered)
        self.refused: Counter[str] = Counter()
        self.refused_initial: Counter[str] = Counter()
        self.outbox: dict[str, tuple[bytes, float]] = {}  # client_id -> (frame, sent at)
        self.acked: dict[str, str] = {}  # client_id -> message id
        self.writer: asyncio.StreamWriter | None = None
        self.ready = False
        self.sent = 0

    @property
    def waiting(self) -> bool:
        """Closed since its last ready."""
        return not self.ready

    async def run(self, gate: asyncio.Semaphore) -> None:
        attempt = 0
        while True:
            if self.first_ready:  # a reconnect: at once, as a browser would
                opened = await self._open()
            else:  # the first join: the bench paces the start, not the storm
                async with gate:
                    opened = await self._open()
            if opened is not None:
                attempt = await self._session(*opened, attempt)
            await asyncio.sleep(backoff(attempt))  # the page's backoff
            attempt += 1

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        path = f"/ws/chat/{self.room}/" + (f"?since={self.last_id}" if self.last_id else "")
        began = time.time()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.address, 0)), 10
            )
        except (OSError, asyncio.TimeoutError):
            self.refused["connect_error"] += 1
            return None
        connected = time.time()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nCookie: {self.cookie}\r\n\r\n"
            ).encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            status = head.split(b" ", 2)[1].decode()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.refused["handshake_error"] += 1
            writer.close()
            return None
        self.attempts.append((began, connected, time.time()))  # where a reconnect's time goes
        if status != "101":
            self.refused[status] += 1
            writer.close()
            return None
        return reader, writer

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attempt: int) -> int:
        """Read frames until the connection ends; the attempt count the backoff goes on from."""
        self.writer = writer
        try:
            while True:
                head = await reader.readexactly(2)
                n = head[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await reader.readexactly(8))[0]
                payload = await reader.readexactly(n)
                opcode = head[0] & 0x0F
                if opcode == 0x1:
                    if self._frame(json.loads(payload)):
                        attempt = 0
                elif opcode == 0x9:
                    writer.write(frame(payload, 0xA))
                elif opcode == 0x8:
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass
        self.ready = False
        self.writer = None
        self.closes.append(time.time())
        writer.close()
        return attempt

    def _frame(self, msg: dict[str, Any]) -> bool:
        """Handle one server frame; True for ready."""
        kind = msg.get("type")
        if kind == "message":
            mid = msg["id"]
            if self.first_ready and (self.start is None or id_key(mid) > id_key(self.start)):
                self.ids[mid] += 1
            if self.last_id is None or id_key(mid) > id_key(self.last_id):
                self.last_id = mid
        elif kind == "ready":
            last = msg.get("last_id")
            if not self.first_ready:
                self.first_ready, self.start = True, last
                self.ids.clear()  # the first join's replay came before the start
            if last and (self.last_id is None or id_key(last) > id_key(self.last_id)):
                self.last_id = last
            self.ready = True
            self.readies.append(time.time())
            self._resend(0.0)
            return True
        elif kind == "ack":
            if self.outbox.pop(msg["client_id"], None) is not None:
                self.acked[msg["client_id"]] = msg["id"]
        elif kind == "error":
            self.refused["error_" + str(msg.get("error"))] += 1
        return False

    def _resend(self, older_than: float) -> None:
        if not self.ready or self.writer is None:
            return
        now = time.monotonic()
        for client_id, (data, sent_at) in list(self.outbox.items()):
            if now - sent_at >= older_than:
                self.writer.write(data)
                self.outbox[client_id] = (data, now)

    async def send_loop(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(random.random() * self.period)  # spread the senders' phases
        next_at = time.monotonic()
        while not stop.is_set():
            self.sent += 1
            client_id = f"c{self.k}-{self.sent}"
            body = json.dumps({"message": f"m {self.k} {self.sent}", "client_id": client_id}).encode()
            self.outbox[client_id] = (frame(body), -1e9)
            self._resend(RESEND_AFTER)
            next_at += self.period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def record(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "room": self.room,
            "start": self.start,
            "ids": dict(self.ids),
            "acked": list(self.acked.values()),
            "unacked": len(self.outbox),
            "closes": self.closes,
            "readies": self.readies,
            "attempts": self.attempts,
            "refused": dict(self.refused),
            "refused_initial": dict(self.refused_initial),
        }


async def main(args: argparse.Namespace) -> None:
    secret = os.environ["CHAT_COOKIE_SECRET"]  # the deployment's: it signs the name cookies
    members = [
        Member(k, f"storm{k % args.rooms}", args.port, secret, k < args.rooms, args.period)
        for k in range(args.first, args.first + args.clients)
    ]
    gate = asyncio.Semaphore(args.concurrency)
    tasks = [asyncio.ensure_future(m.run(gate)) for m in members]
    stop = asyncio.Event()
    senders: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "dump")  # the driver is gone

    threading.Thread(target=read_commands, daemon=True).start()
    while True:
        try:
            command = await asyncio.wait_for(commands.get(), STATUS_EVERY)
        except asyncio.TimeoutError:
            command = ""
        if command == "traffic":
            for m in members:  # what the storm meets is counted apart from the first joins
                m.refused_initial, m.refused = m.refused, Counter()
            senders = [asyncio.ensure_future(m.send_loop(stop)) for m in members if m.sender]
        elif command == "stop":
            stop.set()
        elif command == "dump":
            break
        status = {
            "ready": sum(m.ready for m in members),
            "outbox": sum(len(m.outbox) for m in members),
            "failed": sum(t.done() for t in tasks),
        }
        print(json.dumps(status), flush=True)
    for task in tasks + senders:
        task.cancel()
    print(json.dumps({"records": [m.record() for m in members]}), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="nginx's port")
    parser.add_argument("--first", type=int, default=0, help="the first member's number")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--rooms", type=int, default=500, help="member k is in room k %% rooms; 0..rooms-1 send")
    parser.add_argument("--period", type=float, default=2.5, help="seconds between one sender's messages")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight at once")
    return parser.parse_args()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parse_args()))
