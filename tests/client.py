"""A real WebSocket client for tests: Tornado's own, with timeouts on every wait.

Frames are taken off the socket as they arrive and queued here without bound:
Tornado's own queue holds one, and a test that leaves a few notices unread
would otherwise stall the connection, its close handshake included. A client
that really stops reading is tested with a raw socket instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import WebSocketClientConnection, websocket_connect

from bus.message import id_key
from handlers.identity import USER_COOKIE

TIMEOUT = 5.0
TEST_SECRET = "test-secret-at-least-32-bytes-long"  # the cookie secret of the tests' servers
NOTICES = ("presence", "join", "leave", "typing")
CHANGES = ("edited", "deleted")


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["id"] for frame in frames]


def strictly_increasing(message_ids: list[str]) -> bool:
    keys = [id_key(i) for i in message_ids]
    return all(a < b for a, b in zip(keys, keys[1:]))


def user_cookie(secret: str, name: str) -> str:
    return f"{USER_COOKIE}={create_signed_value(secret, USER_COOKIE, name).decode()}"


class ChatClient:
    def __init__(self, conn: WebSocketClientConnection, frames: "asyncio.Queue[str | bytes | None]") -> None:
        self.conn = conn
        self.history: list[dict[str, Any]] = []
        self.ready: dict[str, Any] | None = None
        self._frames = frames  # None once the connection closed

    @classmethod
    async def connect(
        cls,
        port: int,
        room: str,
        *,
        since: str | None = None,
        user: str | None = None,
        secret: str = TEST_SECRET,
        headers: dict[str, str] | None = None,
        join: bool = True,
        host: str = "127.0.0.1",
        timeout: float = TIMEOUT,
    ) -> "ChatClient":
        url = f"ws://{host}:{port}/ws/chat/{quote(room)}/"
        if since is not None:
            url += f"?since={quote(since)}"
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["Cookie"] = user_cookie(secret, user)
        request = HTTPRequest(url, headers=all_headers, connect_timeout=timeout, request_timeout=timeout)
        frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        conn = await asyncio.wait_for(websocket_connect(request, on_message_callback=frames.put_nowait), timeout)
        client = cls(conn, frames)
        if join:
            await client.read_join(timeout)
        return client

    async def read_join(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Read the replayed history up to and including the ready frame."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "ready":
                self.ready = frame
                return frame
            # A resume also replays edits and deletions of what the client had.
            assert frame.get("replay") is True or frame["type"] in CHANGES, frame
            self.history.append(frame)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self._frames.get(), timeout)
        if raw is None:
            self._frames.put_nowait(None)  # closed for good: every later read says so too
            raise ConnectionError(f"closed: {self.conn.close_code} {self.conn.close_reason}")
        return json.loads(raw)

    async def recv_chat(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame that is not a presence, join, leave or typing notice."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] not in NOTICES:
                return frame

    async def recv_type(self, kind: str, timeout: float = TIMEOUT, skip: tuple[str, ...] = NOTICES) -> dict[str, Any]:
        """The next frame of one type; only the ``skip`` types may come before it."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame
            assert frame["type"] in skip, frame

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` message frames, within one overall deadline."""

        async def collect() -> list[dict[str, Any]]:
            return [await self.recv_type("message", timeout, NOTICES + ("ack",)) for _ in range(count)]

        return await asyncio.wait_for(collect(), timeout)

    async def nothing_for(self, seconds: float) -> None:
        """Assert that no chat frame arrives for a while.

        A fixed wait proves little on a loaded machine: prefer a marker (send a
        message after the thing that must not arrive; the next frame must be it).
        """
        try:
            frame = await self.recv_type("message", seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    def send(self, body: Any) -> None:
        self.conn.write_message(json.dumps(body))

    def send_raw(self, data: str | bytes, binary: bool = False) -> None:
        self.conn.write_message(data, binary=binary)

    async def say(self, text: str, client_id: str | None = None) -> None:
        body: dict[str, Any] = {"message": text}
        if client_id is not None:
            body["client_id"] = client_id
        self.send(body)

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        async def drain() -> None:
            while await self._frames.get() is not None:
                pass
            self._frames.put_nowait(None)

        await asyncio.wait_for(drain(), timeout)
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()

    def drop(self) -> None:
        """Lose the connection: the TCP connection closes without a close frame (a lid shut, a network gone)."""
        protocol = self.conn.protocol
        if protocol is not None and protocol.stream is not None:
            protocol.stream.close()
