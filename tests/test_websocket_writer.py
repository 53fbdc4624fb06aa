"""handlers/websocket/ writes past Tornado's public API: fail loudly when an upgrade changes what it uses.

The package's own tests may read Tornado's private names (tests/test_layout.py allows tests/test_websocket_*).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13

from handlers.websocket.control import aborter
from handlers.websocket.stream import NO_WRITES, LeanIOStream
from handlers.websocket.writer import Written, text_frame, write_text
from tests.client import ChatClient
from tests.helpers import ON_MEMORY


@pytest.mark.gen_test(timeout=30)
async def test_a_live_room_socket_has_the_stream_and_protocol_the_writer_uses(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "frames")
    [socket] = server.registry.sockets
    connection = socket.ws_connection
    assert isinstance(connection, WebSocketProtocol13) and isinstance(connection.stream, IOStream)
    assert not connection.is_closing()
    assert write_text(socket, b'{"type":"typing","user":"direct"}') is Written.KERNEL  # nothing was queued
    frame = await client.recv_type("typing", skip=("presence",))
    assert frame == {"type": "typing", "user": "direct"}  # a valid frame, as Tornado's client parses it
    aborter(socket)()
    await client.wait_closed()
    assert write_text(socket, b"{}") is Written.GONE  # gone: nothing written, nothing raised


@pytest.mark.gen_test(timeout=30)
@ON_MEMORY  # a socket option: the bus plays no part
async def test_a_room_socket_sends_small_frames_without_nagles_delay(make_server: Any) -> None:
    """Tornado turns TCP_NODELAY off after the handshake; the room socket turns it on again.

    With it off, a frame written right after another (a message's echo, then
    its ack) waits for the client's delayed ACK: 40 ms on Linux, measured as
    ack p50 2 -> 23-40 ms with --redis-wait-replicas 1 (bench/RESULTS.md).
    """
    server = await make_server()
    await ChatClient.connect(server.port, "nagle")
    [room_socket] = server.registry.sockets
    connection = room_socket.ws_connection
    assert connection is not None and connection.stream is not None
    raw = connection.stream.socket
    assert raw is not None and raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


@pytest.mark.gen_test(timeout=30)
@ON_MEMORY  # what the handler keeps: the bus plays no part
async def test_an_open_room_socket_lets_go_of_its_handshake_but_keeps_working(make_server: Any) -> None:
    """An idle socket held the handshake's headers, cookies and response headers for good (bench/RESULTS.md)."""
    server = await make_server()
    client = await ChatClient.connect(server.port, "lean", user="Ada", headers={"User-Agent": "x" * 500})
    [room_socket] = server.registry.sockets
    request = room_socket.request
    assert len(request.headers) == 0 and "_cookies" not in vars(request)
    assert request.connection is None and request.server_connection is None  # the HTTP/1 objects are let go
    assert len(room_socket._headers) == 0 and room_socket.ui is None
    with pytest.raises(RuntimeError):
        request.headers["X-Late"] = "nobody may write into the shared empty headers"
    # Our state and Tornado's are in slots: left in the dicts are the methods Tornado replaces on the instance.
    assert set(vars(room_socket)) <= {"finish", "flush", "redirect", "set_cookie", "set_header", "set_status", "write"}
    assert not hasattr(room_socket.ws_connection, "__dict__") or not vars(room_socket.ws_connection)
    assert room_socket._refusals is None  # made at the first refusal
    # Pinged by the server's one wheel, not by a task of its own.
    assert room_socket.ws_connection._ping_coroutine is None and room_socket.ping_slot >= 0
    assert client.ready is not None and client.ready["user"] == "Ada" and request.remote_ip == "127.0.0.1"
    await client.say("still here", client_id="c1")
    assert (await client.recv_type("ack", skip=("presence", "message")))["client_id"] == "c1"
    client.send_raw("not json")
    assert (await client.recv_type("error", skip=("presence", "message")))["error"] == "bad_json"
    assert room_socket._refusals is not None  # made at the first refusal


@pytest.mark.parametrize(
    "length,header",
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_text_frames_carry_the_rfc_6455_length_forms(length: int, header: bytes) -> None:
    payload = b"x" * length
    assert text_frame(payload) == header + payload


@pytest.mark.gen_test(timeout=60)
@ON_MEMORY  # the socket's own buffers: the bus plays no part
async def test_frames_past_what_the_kernel_takes_wait_in_tornado_and_arrive_whole_and_in_order(
    make_server: Any,
) -> None:
    """A frame the socket takes only part of goes on through the IOStream, and later frames queue behind it."""
    server = await make_server()
    client = await ChatClient.connect(server.port, "frames")
    [socket_handler] = server.registry.sockets
    stream = socket_handler.ws_connection.stream
    assert isinstance(stream, LeanIOStream) and stream._write_futures is NO_WRITES  # queues made by the first wait
    padding = "x" * 60_000
    results = [  # written without yielding: the client reads nothing meanwhile, the kernel's buffers fill
        write_text(socket_handler, b'{"type":"typing","user":"%d","pad":"%s"}' % (k, padding.encode()))
        for k in range(400)
    ]
    assert results[0] is Written.KERNEL
    queued = [k for k, result in enumerate(results) if result is not Written.KERNEL]
    assert queued and queued == list(range(queued[0], 400)), "once one waits, every later one waits behind it"
    users = [(await client.recv_type("typing", timeout=10, skip=("presence",)))["user"] for _ in range(400)]
    assert users == [str(k) for k in range(400)]
