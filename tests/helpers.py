"""What several test files need, written once: polling with a deadline, an HTTP fetch,
a raw WebSocket handshake, a free port, a launched Chromium.

Nothing here waits without a deadline: every network call has a timeout and
``eventually`` fails with what it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import AsyncIterator, Awaitable, Callable, Mapping

import pytest
from playwright.async_api import Browser, Playwright, async_playwright
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from ops.process_runner import free_port

TIMEOUT = 5.0
POLL_EVERY = 0.05
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The one way a test chooses its bus: conftest's ``backend`` fixture runs every
# test that makes a server on each bus; a test about one bus, or about something
# that does not depend on the bus (pages, the origin check), is marked with one.
ON_MEMORY = pytest.mark.parametrize("backend", ["memory"])
ON_REDIS = pytest.mark.parametrize("backend", ["redis"])
__all__ = ["free_port"]  # defined in ops/process_runner.py, for the servers and the tests alike
# RFC 6455's sample key: the server's answer to it is not checked by these tests.
WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(POLL_EVERY)  # polling, bounded by the deadline


async def fetch(port: int, path: str, **kwargs: object) -> HTTPResponse:
    """One request to a local server: errors are responses, redirects are not followed."""
    options: dict[str, object] = {"raise_error": False, "follow_redirects": False, "request_timeout": TIMEOUT}
    options.update(kwargs)
    return await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}{path}", **options)  # type: ignore[arg-type]


def handshake_request(path: str, host: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a WebSocket upgrade request, with any extra headers (Origin, ...)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {WEBSOCKET_KEY}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(head: bytes) -> int:
    """The status code of an HTTP response head."""
    return int(head.split(b" ", 2)[1])


async def raw_handshake(
    port: int,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    receive_buffer: int | None = None,
) -> tuple[int, socket.socket]:
    """Send an upgrade request from a plain socket; the status and the socket (the caller closes it).

    After a 101 the socket is a WebSocket that reads nothing unless the caller
    does: with a small ``receive_buffer`` it is a client that stopped reading.
    """
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
        await loop.sock_sendall(sock, handshake_request(path, host or f"127.0.0.1:{port}", headers))
        head = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return status_of(head), sock


async def handshake_status(
    port: int, path: str, headers: Mapping[str, str] | None = None, *, host: str | None = None
) -> int:
    """The status a WebSocket upgrade request gets (101, 403, ...); the socket is closed."""
    status, sock = await raw_handshake(port, path, headers, host=host)
    sock.close()
    return status


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium (Playwright's own download does not work here), kept off the network."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A launched browser, closed (with its driver) on the way out."""
    playwright = await async_playwright().start()
    try:
        browser = await launch_chromium(playwright)
        try:
            yield browser
        finally:
            await browser.close()
    finally:
        await playwright.stop()
