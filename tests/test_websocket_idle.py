"""What an idle room socket keeps: no Task, no suspended coroutine, no write queues of its own.

Each of these was kilobytes per idle connection (bench/RESULTS.md, "Idle
connections: where each KiB goes"). The package's own tests may read
Tornado's private names (tests/test_layout.py allows tests/test_websocket_*).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from typing import Any

import pytest

from handlers.websocket.stream import NO_WRITES, LeanIOStream
from tests.client import ChatClient
from tests.helpers import ON_MEMORY

# The handshake's coroutines: Tornado awaited the receive loop at the bottom of these.
HANDSHAKE_COROUTINES = {"RequestHandler._execute", "Handshake.get", "WebSocketHandler.get", "Joining.open"}
HANDSHAKE_COROUTINES |= {"WebSocketProtocol13.accept_connection", "WebSocketProtocol13._accept_connection"}


def suspended_handshakes() -> list[str]:
    return [
        obj.__qualname__
        for obj in gc.get_objects()
        if inspect.iscoroutine(obj) and obj.cr_frame is not None and obj.__qualname__ in HANDSHAKE_COROUTINES
    ]


@pytest.mark.gen_test(timeout=30)
@ON_MEMORY  # the handler's and Tornado's objects: the bus plays no part
async def test_idle_room_sockets_keep_no_task_coroutine_or_write_queue_and_still_talk(make_server: Any) -> None:
    server = await make_server()
    clients = [await ChatClient.connect(server.port, "idle", user=f"u{k}") for k in range(5)]
    assert len(server.registry.sockets) == 5
    assert suspended_handshakes() == []
    tasks = [getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks()]
    assert "RequestHandler._execute" not in tasks
    for room_socket in server.registry.sockets:
        stream = room_socket.ws_connection.stream
        assert type(stream) is LeanIOStream and stream._write_buffer is NO_WRITES and not stream.writing()
        assert stream.take_chunk is not None and stream._read_future is None  # the reader waits, with no Future
    # Still read and written: a message goes through, and a client's close ends its socket (on_close ran).
    await clients[0].say("hello", client_id="c1")
    assert (await clients[0].recv_type("ack", skip=("presence", "message")))["client_id"] == "c1"
    message = await clients[4].recv_type("message", skip=("presence",))
    assert message["message"] == "hello"
    clients[1].close()
    deadline = asyncio.get_running_loop().time() + 10
    while len(server.registry.sockets) > 4:
        assert asyncio.get_running_loop().time() < deadline, "the closed socket never left the registry"
        await asyncio.sleep(0.01)


async def left_registry(server: Any, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while len(server.registry.sockets) > count:
        assert asyncio.get_running_loop().time() < deadline, "a closed socket never left the registry"
        await asyncio.sleep(0.01)


@pytest.mark.gen_test(timeout=30)
@ON_MEMORY
async def test_a_close_from_the_server_side_reaches_a_reader_that_waits_without_a_future(make_server: Any) -> None:
    server = await make_server()
    clients = [await ChatClient.connect(server.port, "closing", user=f"u{k}") for k in range(3)]
    sockets = sorted(server.registry.sockets, key=lambda s: s.user)  # in the clients' order: u0, u1, u2
    assert all(s.ws_connection.stream.take_chunk is not None for s in sockets)
    sockets[0].ws_connection.stream.close()  # as a failed write closes it: no close frame, no read pending
    await left_registry(server, 2)
    sockets[1].close(1000, "bye")  # a polite close: the client's answer is read by the waiting reader
    await left_registry(server, 1)
    assert sockets[1].close_code == 1000  # on_ws_connection_close ran, from the reader's end
    assert await clients[1].wait_closed(10) == 1000
    await clients[2].say("still here", client_id="c2")
    assert (await clients[2].recv_type("ack", skip=("presence", "message")))["client_id"] == "c2"
