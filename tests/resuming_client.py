"""A plain client that behaves like the room page across server restarts.

It reconnects after a drop, resumes with ``since`` = the newest id it has,
and resends its unacknowledged messages with their ``client_id``: what the
room page does, so deployment tests can check "nothing missed, nothing twice"
with many clients at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from bus.message import id_key
from tests.client import TEST_SECRET, TIMEOUT, user_cookie


class ResumingClient:
    """One room page's connection logic, without the page.

    Subclasses change what they record of a message (``_record``), what they do
    with a refused one (``_refused``) and how long they pause before a reconnect
    (``_pause``); the reconnect, the resume and the resend are the same for all.
    """

    connect_timeout = TIMEOUT
    first_delay, max_delay = 0.05, 1.0  # reconnect backoff, doubling, as the room page's

    def __init__(
        self, url: str, *, user: str | None = None, secret: str = TEST_SECRET, address: str | None = None
    ) -> None:
        self.url = url
        self.address = address  # the local address it connects from (the per-address limits see it)
        self.headers = {"Cookie": user_cookie(secret, user)} if user else {}
        self.received: list[dict[str, Any]] = []  # message frames, in arrival order
        self.last_id: str | None = None
        self.outbox: dict[str, str] = {}  # client_id -> text, not yet acknowledged
        self.acks: dict[str, str] = {}  # client_id -> id
        self.connects = 0
        self.incomplete_resumes = 0
        self._conn: WebSocketClientConnection | None = None
        self._ready = asyncio.Event()
        self._acked_all = asyncio.Event()  # set while the outbox is empty
        self._acked_all.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()

    async def wait_ready(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def say(self, text: str, client_id: str) -> None:
        """Queue a message; it is (re)sent until acknowledged."""
        self.outbox[client_id] = text
        self._acked_all.clear()
        self._send(client_id, text)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` messages have arrived (in total)."""

        async def enough() -> None:
            while len(self.received) < count:
                await asyncio.sleep(0.02)  # polling our own list, bounded by the deadline

        await asyncio.wait_for(enough(), timeout)
        return self.received

    async def wait_acked(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._acked_all.wait(), timeout)

    def _resend(self, client_id: str) -> None:
        if client_id in self.outbox:
            self._send(client_id, self.outbox[client_id])

    def _send(self, client_id: str, text: str) -> None:
        if self._conn is not None and self._ready.is_set():
            try:
                self._conn.write_message(json.dumps({"message": text, "client_id": client_id}))
            except WebSocketClosedError:
                pass  # closed before the read loop noticed: it stays in the outbox, resent after the resume

    async def _run(self) -> None:
        delay = self.first_delay
        while True:
            try:
                await self._session()
                delay = self.first_delay
            except (OSError, asyncio.TimeoutError, ConnectionError, HTTPClientError):
                pass  # refused, 502 from nginx, dropped: retry as the room page does
            self._ready.clear()
            await asyncio.sleep(self._pause(delay))  # reconnect backoff, as the room page does
            delay = min(delay * 2, self.max_delay)

    def _pause(self, delay: float) -> float:
        return delay

    async def _session(self) -> None:
        url = self.url + (f"?since={quote(self.last_id)}" if self.last_id else "")
        request = HTTPRequest(
            url,
            headers=self.headers,
            connect_timeout=self.connect_timeout,
            request_timeout=self.connect_timeout,
            network_interface=self.address,
        )
        # Not wait_for: on Python 3.11 it drops a cancel (stop()) that lands as the connect completes,
        # and the client would stay connected for ever.
        async with asyncio.timeout(self.connect_timeout):
            self._conn = await websocket_connect(request)
        self.connects += 1
        while True:
            raw = await self._conn.read_message()
            if raw is None:
                raise ConnectionError("closed")
            if isinstance(raw, str):
                self._handle(json.loads(raw))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            self._record(frame)
        elif kind == "ready":
            if self.connects > 1 and self.last_id is not None and not frame["complete"]:
                self.incomplete_resumes += 1
            self._ready.set()
            for client_id, text in list(self.outbox.items()):
                self._send(client_id, text)
        elif kind == "ack":
            if self.outbox.pop(frame["client_id"], None) is not None:
                self.acks[frame["client_id"]] = frame["id"]
            if not self.outbox:
                self._acked_all.set()
        elif kind == "error" and frame.get("client_id"):
            self._refused(frame)

    def _record(self, frame: dict[str, Any]) -> None:
        """A message frame: kept in arrival order, marked if it is not newer than the newest so far."""
        self.received.append(frame if self._advance(frame["id"]) else {**frame, "duplicate": True})

    def _advance(self, message_id: str) -> bool:
        """Whether the id is newer than the newest so far (``since`` on the next reconnect); it becomes it."""
        if self.last_id is not None and id_key(message_id) <= id_key(self.last_id):
            return False
        self.last_id = message_id
        return True

    def _refused(self, frame: dict[str, Any]) -> None:
        """Refused for now (unavailable, rate limited): try again shortly, as the page does; else a bug."""
        if frame["error"] not in ("unavailable", "rate_limited"):
            raise AssertionError(f"message refused: {frame}")
        asyncio.get_running_loop().call_later(0.5, self._resend, frame["client_id"])
