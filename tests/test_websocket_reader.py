"""handlers/websocket/reader.py: client frames cut out of whatever has arrived, with Tornado's checks.

A raw socket sends hand-made frames (RFC 6455 section 5) so that the tests
choose how they are split across reads: several in one write, one byte at a
time, a message in fragments with a ping between them, a length over the
limit before any payload, and each violation of framing (closed with 1002).
tests/test_rfc6455.py has the checks Tornado does not make.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.client import ChatClient
from tests.raw_socket import CONTINUATION, PING, TEXT, chat, client_frame, raw_rooms


@pytest.fixture
def room(make_server: Any) -> Iterator[Any]:
    yield from raw_rooms(make_server)


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
        pytest.param(client_frame(0x3, b"{}"), id="reserved-opcode"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_protocol_violation_closes_that_connection_only_with_1002(room: Any, frames: bytes) -> None:
    raw = await room()
    bystander = await ChatClient.connect(room.port, "frames")
    await raw.send(frames)
    assert await raw.ended() == 1002  # RFC 6455 section 7.4.1: a protocol error
    await bystander.say("still here")
    assert (await bystander.messages(1))[0]["message"] == "still here"
