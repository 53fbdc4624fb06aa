"""A real WebSocket client for tests: Tornado's own, with timeouts on every wait."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import WebSocketClientConnection, websocket_connect

from handlers.identity import USER_COOKIE

TIMEOUT = 5.0
NOTICES = ("presence", "join", "leave", "typing")


def user_cookie(secret: str, name: str) -> str:
    return f"{USER_COOKIE}={create_signed_value(secret, USER_COOKIE, name).decode()}"


class ChatClient:
    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.history: list[dict[str, Any]] = []
        self.ready: dict[str, Any] | None = None

    @classmethod
    async def connect(
        cls, port: int, room: str, *, since: str | None = None, user: str | None = None,
        secret: str = "test-secret", headers: dict[str, str] | None = None, join: bool = True,
        host: str = "127.0.0.1",
    ) -> "ChatClient":
        url = f"ws://{host}:{port}/ws/chat/{quote(room)}/"
        if since is not None:
            url += f"?since={quote(since)}"
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["Cookie"] = user_cookie(secret, user)
        request = HTTPRequest(url, headers=all_headers, connect_timeout=TIMEOUT, request_timeout=TIMEOUT)
        conn = await asyncio.wait_for(websocket_connect(request), TIMEOUT)
        client = cls(conn)
        if join:
            await client.read_join()
        return client

    async def read_join(self) -> dict[str, Any]:
        """Read the replayed history up to and including the ready frame."""
        while True:
            frame = await self.recv()
            if frame["type"] == "ready":
                self.ready = frame
                return frame
            assert frame["type"] == "message" and frame.get("replay") is True, frame
            self.history.append(frame)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            raise ConnectionError(f"closed: {self.conn.close_code} {self.conn.close_reason}")
        return json.loads(raw)

    async def recv_type(
        self, kind: str, timeout: float = TIMEOUT, skip: tuple[str, ...] = NOTICES,
    ) -> dict[str, Any]:
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
        """Assert that no chat frame arrives for a while (a negative check)."""
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
            while await self.conn.read_message() is not None:
                pass
        await asyncio.wait_for(drain(), timeout)
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()
