"""handlers/frame_reader.py: client frames cut out of whatever has arrived, with Tornado's checks.

A raw socket sends hand-made frames (RFC 6455 section 5) so that the tests
choose how they are split across reads: several in one write, one byte at a
time, a message in fragments with a ping between them, a length over the
limit before any payload, and each protocol violation Tornado aborts for.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any

import pytest

from tests.client import TIMEOUT, ChatClient
from tests.helpers import handshake_request, status_of

TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


def client_frame(opcode: int, payload: bytes, *, final: bool = True, rsv: int = 0, length: int | None = None) -> bytes:
    """A masked client frame; ``length`` overrides the length field (its payload is then what is given)."""
    length = len(payload) if length is None else length
    head = bytes([(0x80 if final else 0) | rsv | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def chat(text: str, client_id: str) -> bytes:
    return json.dumps({"message": text, "client_id": client_id}).encode()


class RawSocket:
    """The client end of a WebSocket as bytes: it writes what it is given and parses the server's frames."""

    def __init__(self, sock: socket.socket, received: bytes) -> None:
        self.sock = sock
        self.buffer = received.split(b"\r\n\r\n", 1)[1]  # frames that came with the 101
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, port: int, room: str) -> "RawSocket":
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received = b""
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
            await loop.sock_sendall(sock, handshake_request(f"/ws/chat/{room}/", f"127.0.0.1:{port}"))
            while b"\r\n\r\n" not in received:  # the 101, and perhaps the first frames after it
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
                assert chunk, "closed during the handshake"
                received += chunk
        except BaseException:
            sock.close()
            raise
        assert status_of(received) == 101
        return cls(sock, received)

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def _more(self) -> bool:
        chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), TIMEOUT)
        self.buffer += chunk
        return bool(chunk)

    async def frame(self) -> tuple[int, bytes] | None:
        """The server's next frame (opcode, payload), or None once the connection is closed."""
        while True:
            if len(self.buffer) >= 2:
                length, start = self.buffer[1] & 0x7F, 2
                if length == 126:
                    length, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif length == 127:
                    length, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
                if len(self.buffer) >= start + length:
                    opcode, payload = self.buffer[0] & 0x0F, self.buffer[start : start + length]
                    self.buffer = self.buffer[start + length :]
                    return opcode, payload
            try:
                if not await self._more():
                    return None
            except ConnectionResetError:
                return None

    async def json_any(self) -> dict[str, Any]:
        """The next text frame, parsed."""
        while True:
            frame = await self.frame()
            assert frame is not None, "closed before a text frame"
            if frame[0] == TEXT:
                return dict(json.loads(frame[1]))

    async def json(self, kind: str) -> dict[str, Any]:
        """The next text frame of that ``type``, skipping the others (presence, ready ...)."""
        while (body := await self.json_any())["type"] != kind:
            pass
        return body

    async def pong(self) -> bytes:
        while True:
            frame = await self.frame()
            assert frame is not None, "closed before a pong"
            if frame[0] == PONG:
                return frame[1]

    async def ended(self) -> int | None:
        """Read to the end: the close code if a close frame came, None if the connection just ended."""
        while (frame := await self.frame()) is not None:
            if frame[0] == CLOSE:
                return int(struct.unpack("!H", frame[1][:2])[0]) if len(frame[1]) >= 2 else None
        return None


@pytest.fixture
def room(make_server: Any) -> Any:
    """``await room()``: a raw socket joined to a room of a fresh server (``room.port``); closed at the end."""
    sockets: list[RawSocket] = []

    async def open_one() -> RawSocket:
        if not hasattr(open_one, "port"):
            open_one.port = (await make_server()).port  # type: ignore[attr-defined]
        raw = await RawSocket.open(open_one.port, "frames")  # type: ignore[attr-defined]
        sockets.append(raw)
        await raw.json("ready")
        return raw

    yield open_one
    for raw in sockets:
        raw.sock.close()


@pytest.mark.gen_test(timeout=30)
async def test_frames_that_arrive_together_or_a_byte_at_a_time_are_each_handled_in_order(room: Any) -> None:
    raw = await room()
    together = b"".join(client_frame(TEXT, chat(f"m{k}", f"c{k}")) for k in range(3))
    await raw.send(together)
    for byte in client_frame(TEXT, chat("slow", "c3")):
        await raw.send(bytes([byte]))
    assert [(await raw.json("ack"))["client_id"] for _ in range(4)] == ["c0", "c1", "c2", "c3"]
    watcher = await ChatClient.connect(room.port, "frames")
    assert [m["message"] for m in watcher.history[-4:]] == ["m0", "m1", "m2", "slow"]


@pytest.mark.gen_test(timeout=30)
async def test_a_message_in_fragments_is_one_message_and_a_ping_between_them_is_answered(room: Any) -> None:
    raw = await room()
    body = chat("in three parts", "f1")
    await raw.send(
        client_frame(TEXT, body[:10], final=False)
        + client_frame(PING, b"between")
        + client_frame(CONTINUATION, body[10:20], final=False)
    )
    assert await raw.pong() == b"between"
    await raw.send(client_frame(CONTINUATION, body[20:]))
    got: dict[str, dict[str, Any]] = {}
    while len(got) < 2:  # through Redis the message may come before its ack
        body = await raw.json_any()
        if body["type"] in ("ack", "message"):
            got[body["type"]] = body
    assert got["ack"]["client_id"] == "f1" and got["message"]["message"] == "in three parts"


@pytest.mark.gen_test(timeout=30)
async def test_a_length_over_the_limit_closes_with_1009_before_any_payload(room: Any) -> None:
    raw = await room()
    await raw.send(client_frame(TEXT, b"", length=1 << 20))  # the header alone announces 1 MiB
    assert await raw.ended() == 1009


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(client_frame(TEXT, chat("x", "r"), rsv=0x40), id="reserved-bit"),
        pytest.param(client_frame(PING, b"p" * 126), id="control-over-125"),
        pytest.param(client_frame(PING, b"p", final=False), id="fragmented-control"),
        pytest.param(client_frame(CONTINUATION, b"{}"), id="continuation-of-nothing"),
        pytest.param(client_frame(TEXT, b"{", final=False) + client_frame(TEXT, b"{}"), id="new-before-end"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_protocol_violation_ends_that_connection_only(room: Any, frames: bytes) -> None:
    raw = await room()
    bystander = await ChatClient.connect(room.port, "frames")
    await raw.send(frames)
    assert await raw.ended() is None  # aborted, as Tornado does: no close handshake
    await bystander.say("still here")
    assert (await bystander.messages(1))[0]["message"] == "still here"
