"""A WebSocket client as raw bytes, for tests that choose every byte a client sends (RFC 6455 section 5)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from typing import Any, Iterator

from tests.client import TEST_SECRET, TIMEOUT, user_cookie
from tests.helpers import handshake_request, status_of

TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


def client_frame(
    opcode: int, payload: bytes, *, final: bool = True, rsv: int = 0, length: int | None = None, masked: bool = True
) -> bytes:
    """A client frame, masked unless told; ``length`` overrides the length field (its payload is then what is given)."""
    length = len(payload) if length is None else length
    head = bytes([(0x80 if final else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([bit | length])
    elif length <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def chat(text: str, client_id: str) -> bytes:
    return json.dumps({"message": text, "client_id": client_id}).encode()


class RawSocket:
    """The client end of a WebSocket as bytes: it writes what it is given and parses the server's frames."""

    def __init__(self, sock: socket.socket, received: bytes) -> None:
        self.sock = sock
        self.head, self.buffer = received.split(b"\r\n\r\n", 1)  # the 101, and frames that came with it
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls,
        port: int,
        room: str,
        headers: dict[str, str] | None = None,
        *,
        source: str = "",
        receive_buffer: int | None = None,
    ) -> "RawSocket":
        """Complete the handshake; ``source`` is the client's address, ``receive_buffer`` its SO_RCVBUF."""
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
        if receive_buffer is not None:  # a small one: a client that stops reading fills it soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if source:
            sock.bind((source, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received = b""
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
            await loop.sock_sendall(sock, handshake_request(f"/ws/chat/{room}/", f"127.0.0.1:{port}", headers))
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


def raw_rooms(make_server: Any) -> Iterator[Any]:
    """For a ``room`` fixture: ``await room()``, a raw socket joined to a room of a fresh server (``room.port``)."""
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


async def open_paused(
    port: int, room: str, user: str, *, source: str = "", receive_buffer: int | None = None
) -> tuple[socket.socket, bytes]:
    """A WebSocket of ``user`` that completes the handshake, then reads nothing and answers nothing.

    The socket (the caller closes it) and the bytes read past the 101.
    """
    cookie = {"Cookie": user_cookie(TEST_SECRET, user)}
    raw = await RawSocket.open(port, room, cookie, source=source, receive_buffer=receive_buffer)
    return raw.sock, raw.buffer
