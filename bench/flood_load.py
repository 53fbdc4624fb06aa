"""The load side of bench/flood_bystander.py: members that read, a churner and pingers, on raw sockets.

Each runs in a process of its own (flood_bystander.py's ``--mode``), so that
its work is not measured as the server's latency.
"""

from __future__ import annotations

import asyncio
import time

PING = bytes([0x89, 0x80, 1, 2, 3, 4])  # an empty masked ping
PINGS = PING * 10000


def handshake(port: int, room: str, address: str) -> bytes:
    return (
        f"GET /ws/chat/{room}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nX-Real-Ip: {address}\r\n\r\n"
    ).encode()


async def open_raw(port: int, room: str, address: str) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake on a plain TCP stream: (status, reader, writer)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(handshake(port, room, address))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return int(head.split(b" ", 2)[1]), reader, writer


class Counts(dict[str, int]):
    def add(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


async def member(port: int, k: int, counts: Counts, stop: asyncio.Event) -> None:
    """A member of ``busy`` that reads everything; counts the bytes it gets."""
    status, reader, writer = await open_raw(port, "busy", f"10.1.{k // 250}.{k % 250 + 1}")
    assert status == 101, status
    pending = b""
    while not stop.is_set():
        data = await reader.read(65536)
        if not data:
            raise RuntimeError("a member was disconnected")
        counts.add("member_bytes", len(data))
        pending = answer_pings(pending + data, writer)
    writer.close()


def answer_pings(data: bytes, writer: asyncio.StreamWriter) -> bytes:
    """Skip the server's (unmasked) frames, answering its pings as a browser does; what is left of a frame."""
    while len(data) >= 2:
        length, head = data[1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[2:10], "big"), 10
        if len(data) < head + length:
            break
        if data[0] & 0x0F == 0x9:
            writer.write(bytes([0x8A, 0x80, 1, 2, 3, 4]))  # an empty masked pong
        data = data[head + length :]
    return data


async def churner(port: int, rate: float, counts: Counts, stop: asyncio.Event, lanes: int = 8) -> None:
    """Handshakes into ``busy`` from one address, closed at once, up to ``rate`` a second over ``lanes``."""

    async def lane() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += lanes / rate
            try:
                status, _, writer = await open_raw(port, "busy", "10.9.9.9")
                counts.add(str(status))
                writer.close()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                counts.add("error")
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def pinger(port: int, counts: Counts, stop: asyncio.Event) -> None:
    """One connection of 10.8.8.8 sending pings as fast as it can; reconnects when closed or refused."""
    while not stop.is_set():
        try:
            status, reader, writer = await open_raw(port, "pings", "10.8.8.8")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            counts.add("error")
            await asyncio.sleep(0.05)
            continue
        counts.add(str(status))
        if status != 101:
            writer.close()
            await asyncio.sleep(0.05)  # refused (429): try again soon
            continue
        drain = asyncio.ensure_future(_drain(reader))
        try:
            while not stop.is_set() and not drain.done():
                writer.write(PINGS)
                counts.add("pings", len(PINGS) // len(PING))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        counts.add("closed")
        writer.close()
        drain.cancel()


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass
