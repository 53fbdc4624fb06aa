"""What RFC 6455 asks of the server that Tornado's own receive loop does not check, over a raw socket.

Each violation closes that connection with the code the RFC names (1002 a
protocol error, 1007 text that is not UTF-8) and leaves every other client
of the room as it was. Compression is never negotiated.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

import pytest
from structlog.testing import capture_logs

from tests.client import ChatClient
from tests.helpers import eventually
from tests.raw_socket import CLOSE, CONTINUATION, TEXT, RawSocket, chat, client_frame, raw_rooms


@pytest.fixture
def room(make_server: Any) -> Iterator[Any]:
    yield from raw_rooms(make_server)


async def closes_alone_with(room: Any, frames: bytes, code: int) -> None:
    """``frames`` from one client close it with ``code``; a client beside it in the room goes on."""
    raw = await room()
    bystander = await ChatClient.connect(room.port, "frames")
    await raw.send(frames)
    assert await raw.ended() == code
    await bystander.say("still here")
    assert (await bystander.messages(1))[0]["message"] == "still here"


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return client_frame(CLOSE, struct.pack("!H", code) + reason)


@pytest.mark.gen_test(timeout=30)
async def test_an_unmasked_client_frame_closes_with_1002(room: Any) -> None:
    await closes_alone_with(room, client_frame(TEXT, chat("bare", "u1"), masked=False), 1002)


@pytest.mark.gen_test(timeout=30)
async def test_the_log_names_the_code_a_violation_was_closed_with(room: Any) -> None:
    with capture_logs() as logs:
        raw = await room()
        await raw.send(client_frame(TEXT, chat("bare", "u2"), masked=False))
        assert await raw.ended() == 1002

        async def logged() -> bool:
            return any(e["event"] == "ws.disconnect" for e in logs)

        await eventually(logged, 5, "the disconnect logged")
    assert [e["code"] for e in logs if e["event"] == "ws.disconnect"] == [1002]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
@pytest.mark.gen_test(timeout=30)
async def test_a_close_code_a_client_may_not_send_closes_with_1002(room: Any, code: int) -> None:
    await closes_alone_with(room, close_frame(code), 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1014, 3000, 4999])
@pytest.mark.gen_test(timeout=30)
async def test_a_close_code_a_client_may_send_is_echoed(room: Any, code: int) -> None:
    raw = await room()
    await raw.send(close_frame(code, "bye é".encode()))
    assert await raw.ended() == code


@pytest.mark.gen_test(timeout=30)
async def test_a_close_payload_of_one_byte_closes_with_1002(room: Any) -> None:
    await closes_alone_with(room, client_frame(CLOSE, b"\x03"), 1002)


@pytest.mark.gen_test(timeout=30)
async def test_a_close_reason_that_is_not_utf8_closes_with_1007(room: Any) -> None:
    await closes_alone_with(room, close_frame(1000, b"\xff\xfe"), 1007)


@pytest.mark.gen_test(timeout=30)
async def test_text_that_is_not_utf8_closes_with_1007(room: Any) -> None:
    await closes_alone_with(room, client_frame(TEXT, b'{"message": "\xc3\x28"}'), 1007)


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_first_fragment_closes_with_1007_before_the_last_arrives(room: Any) -> None:
    """The continuation is never sent: the close can only come from the first fragment's check."""
    await closes_alone_with(room, client_frame(TEXT, b'{"message": "\xed\xa0\x80', final=False), 1007)


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_middle_fragment_closes_with_1007_before_the_last_arrives(room: Any) -> None:
    frames = client_frame(TEXT, b'{"message": ', final=False) + client_frame(CONTINUATION, b'"\xf8', final=False)
    await closes_alone_with(room, frames, 1007)


@pytest.mark.gen_test(timeout=30)
async def test_a_character_split_between_fragments_is_one_valid_message(room: Any) -> None:
    raw = await room()
    body = '{"message": "café ☕", "client_id": "split"}'.encode()
    cut = body.index("☕".encode()) + 1  # inside the three bytes of the cup
    await raw.send(client_frame(TEXT, body[:cut], final=False) + client_frame(CONTINUATION, body[cut:]))
    got: dict[str, dict[str, Any]] = {}
    while len(got) < 2:  # through Redis the message may come before its ack
        frame = await raw.json_any()
        if frame["type"] in ("ack", "message"):
            got[frame["type"]] = frame
    assert got["ack"]["client_id"] == "split" and got["message"]["message"] == "café ☕"


@pytest.mark.gen_test(timeout=30)
async def test_compression_is_not_negotiated_and_a_compressed_frame_closes_with_1002(room: Any) -> None:
    raw = await room()
    offered = await RawSocket.open(room.port, "frames", {"Sec-WebSocket-Extensions": "permessage-deflate"})
    try:
        assert b"sec-websocket-extensions" not in offered.head.lower()
        await offered.json("ready")
        await offered.send(client_frame(TEXT, chat("deflated?", "z1"), rsv=0x40))  # RSV1: "compressed"
        assert await offered.ended() == 1002
    finally:
        offered.sock.close()
    await raw.send(client_frame(TEXT, chat("plain", "z2")))
    assert (await raw.json("ack"))["client_id"] == "z2"
