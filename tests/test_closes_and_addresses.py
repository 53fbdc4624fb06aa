"""Close codes and client addresses: what a client is told is what is logged; who it counts as."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from handlers.proxies import address_key
from tests.helpers import eventually
from tests.processes import StartRaw
from tests.raw_socket import open_paused
from tests.test_limits import handshake_status


def next_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, payload, the rest) of the first whole server frame (never masked) in ``buffer``, or None."""
    if len(buffer) < 2:
        return None
    size, start = buffer[1] & 0x7F, 2
    if size >= 126:
        width = 2 if size == 126 else 8
        if len(buffer) < 2 + width:
            return None
        size, start = int.from_bytes(buffer[2 : 2 + width], "big"), 2 + width
    if len(buffer) < start + size:
        return None
    return buffer[0] & 0x0F, buffer[start : start + size], buffer[start + size :]


async def read_close_code(sock: socket.socket, buffer: bytes, timeout: float) -> int | None:
    """Read frames until a close frame; its code, or None if the socket ended without one."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        frame = next_frame(buffer)
        while frame is not None:
            opcode, payload, buffer = frame
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None
            frame = next_frame(buffer)
        left = deadline - time.monotonic()
        assert left > 0, "no close frame within the timeout"
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        if not chunk:
            return None
        buffer += chunk


@pytest.mark.gen_test(timeout=30)
async def test_the_ping_timeout_close_code_is_the_same_on_the_wire_and_in_the_log(make_server: Any) -> None:
    server = await make_server(ping_interval=0.5, ping_timeout=0.5, history=0)
    with capture_logs() as logs:
        paused, buffered = await open_paused(server.port, "ping", "paused")
        try:
            on_the_wire = await read_close_code(paused, buffered, timeout=10)
        finally:
            paused.close()

        async def logged() -> bool:
            return any(line["event"] == "ws.disconnect" for line in logs)

        await eventually(logged, 10, "the ws.disconnect line")
    in_the_log = next(line["code"] for line in logs if line["event"] == "ws.disconnect")
    assert on_the_wire == in_the_log == 1008  # the audit: 1000 on the wire, 1008 in the log


@pytest.mark.parametrize(
    "address,key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", ""),
    ],
)
def test_an_ipv6_address_is_counted_by_its_64(address: str, key: str) -> None:
    assert address_key(address) == key


@pytest.mark.gen_test(timeout=30)
async def test_two_addresses_in_one_ipv6_64_share_one_budget(make_server: Any) -> None:
    # The addresses come from the (loopback, allowed) proxy's X-Real-Ip: this machine holds one /64 only.
    server = await make_server(behind_proxy=True, max_connections_per_client=1)
    first = await handshake_status(server.port, headers={"X-Real-Ip": "2001:db8:1:2::1"})
    same_64 = await handshake_status(server.port, headers={"X-Real-Ip": "2001:db8:1:2:ffff:ffff:ffff:ffff"})
    other_64 = await handshake_status(server.port, headers={"X-Real-Ip": "2001:db8:1:3::1"})
    assert (first, same_64, other_64) == (101, 429, 101)  # the audit: every /128 had budgets of its own


@pytest.mark.gen_test(timeout=90)
async def test_slow_headers_from_one_address_never_make_a_handshake_from_another_wait(
    tmp_path: Path, start_raw: StartRaw
) -> None:
    """The audit: 2,500 slow-header connections from one address; a good handshake waited 9.9 s."""
    server = await start_raw(tmp_path / "server.log", "--header-timeout", "10", nofile=1024)
    loop = asyncio.get_running_loop()
    slow: list[socket.socket] = []
    try:
        for _ in range(2500):  # a request line and half a header, then nothing: held until the header timeout
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), 5)
                await loop.sock_sendall(sock, b"GET /chat/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            except (OSError, asyncio.TimeoutError):
                sock.close()  # closed by the server, or the backlog is full: the flood goes on regardless
                continue
            slow.append(sock)
        started = time.monotonic()
        good, _ = await open_paused(server.port, "good", "bystander", source="127.0.0.2")
        waited = time.monotonic() - started
        good.close()
    finally:
        for sock in slow:
            sock.close()
    assert waited < 2.0, f"a handshake from another address waited {waited:.1f} s"
    assert server.stop() == 0


async def http_get(port: int, path: str, source: str) -> bytes:
    """One GET from the address ``source``; the whole answer (Connection: close), b"" when closed unanswered."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    answer = b""
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            answer += chunk
        return answer
    except ConnectionResetError:
        return answer
    finally:
        sock.close()


@pytest.mark.gen_test(timeout=30)
async def test_the_http_cap_counts_connections_until_they_become_websockets(make_server: Any) -> None:
    server = await make_server(max_http_connections_per_client=5, max_connections_per_client=50)
    statuses = [await handshake_status(server.port, "cap") for _ in range(20)]  # each left open
    assert statuses == [101] * 20  # a WebSocket no longer holds one of the address's HTTP slots
    held = []
    for _ in range(5):  # slow headers: each holds one of 127.0.0.1's HTTP slots
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        held.append(sock)
    try:
        assert await http_get(server.port, "/healthz", "127.0.0.1") == b""  # the sixth: closed unanswered
        assert (await http_get(server.port, "/healthz", "127.0.0.2")).startswith(b"HTTP/1.1 200")  # another's
        metrics = (await http_get(server.port, "/metrics", "127.0.0.2")).decode()
        assert 'chat_connections_refused_total{reason="http_client_full"} 1.0' in metrics
    finally:
        for sock in held:
            sock.close()
