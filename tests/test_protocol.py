"""The room WebSocket (docs/protocol.md), on every bus backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs
from tornado.httpclient import HTTPClientError

from bus.message import id_key
from handlers.room_socket import text_frame
from tests.client import NOTICES, ChatClient, ids, strictly_increasing
from tests.helpers import raw_handshake
from tests.test_metrics import scrape, value

Frame = dict[str, Any]


async def say_all(client: ChatClient, texts: list[str]) -> None:
    for text in texts:
        await client.say(text)


# ---- delivery -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_message_reaches_everyone_in_the_room_and_no_one_else(make_server: Any) -> None:
    server = await make_server()
    ann = await ChatClient.connect(server.port, "lobby", user="ann")
    bob = await ChatClient.connect(server.port, "lobby", user="bob")
    other = await ChatClient.connect(server.port, "elsewhere", user="eve")
    assert ann.ready == {"type": "ready", "room": "lobby", "user": "ann", "last_id": None, "complete": True}

    await ann.say("hello")
    for client in (ann, bob):
        [frame] = await client.messages(1)
        assert frame["type"] == "message" and frame["message"] == "hello" and frame["user"] == "ann"
        assert frame["room"] == "lobby" and "replay" not in frame
        assert id_key(frame["id"]).ms == frame["ts"]
        assert abs(frame["ts"] / 1000 - time.time()) < 60  # milliseconds since the epoch, now
    # Had eve been sent "hello", it would come before a later message of her own room.
    neighbour = await ChatClient.connect(server.port, "elsewhere", user="eve2")
    await neighbour.say("marker")
    assert [f["message"] for f in await other.messages(1)] == ["marker"]


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_senders_give_every_receiver_one_identical_order(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    receivers = [await ChatClient.connect(server.port, "race", user=f"r{i}") for i in range(4)]
    senders = [await ChatClient.connect(server.port, "race", user=f"s{i}") for i in range(3)]
    texts = {s: [f"s{n}-{k}" for k in range(200)] for n, s in enumerate(senders)}

    await asyncio.gather(*(say_all(s, t) for s, t in texts.items()))
    streams = [await r.messages(600, timeout=30) for r in receivers + senders]

    first = ids(streams[0])
    assert strictly_increasing(first)
    assert sorted(f["message"] for f in streams[0]) == sorted(t for ts in texts.values() for t in ts)
    for stream in streams[1:]:
        assert ids(stream) == first
    for sent in texts.values():  # each sender's own messages keep its order
        mine = [f["message"] for f in streams[0] if f["message"] in set(sent)]
        assert mine == sent


# ---- history and resume ----------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_join_replays_the_last_50_then_ready(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    writer = await ChatClient.connect(server.port, "hist")
    await say_all(writer, [f"m{k}" for k in range(60)])
    sent = await writer.messages(60)

    late = await ChatClient.connect(server.port, "hist")
    assert [f["message"] for f in late.history] == [f"m{k}" for k in range(10, 60)]
    assert all(f["replay"] is True for f in late.history)
    assert ids(late.history) == ids(sent[10:])
    assert late.ready is not None and late.ready["last_id"] == sent[-1]["id"]
    assert late.ready["complete"] is False  # 10 older messages were not replayed

    await writer.say("live")
    [live] = await late.messages(1)
    assert live["message"] == "live" and id_key(live["id"]) > id_key(late.ready["last_id"])


@pytest.mark.gen_test(timeout=30)
async def test_since_replays_exactly_the_later_messages(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    writer = await ChatClient.connect(server.port, "resume")
    await say_all(writer, [f"m{k}" for k in range(20)])
    sent = await writer.messages(20)

    resumed = await ChatClient.connect(server.port, "resume", since=sent[6]["id"])
    assert ids(resumed.history) == ids(sent[7:])
    assert resumed.ready is not None and resumed.ready["complete"] is True
    assert resumed.ready["last_id"] == sent[-1]["id"]

    up_to_date = await ChatClient.connect(server.port, "resume", since=sent[-1]["id"])
    assert up_to_date.history == [] and up_to_date.ready is not None and up_to_date.ready["complete"] is True


@pytest.mark.gen_test(timeout=30)
async def test_since_older_than_retention_is_incomplete(make_server: Any) -> None:
    server = await make_server(rate_limit=0, retention=10)
    writer = await ChatClient.connect(server.port, "trim")
    await say_all(writer, [f"m{k}" for k in range(40)])
    sent = await writer.messages(40)

    resumed = await ChatClient.connect(server.port, "trim", since=sent[0]["id"])
    assert resumed.ready is not None and resumed.ready["complete"] is False
    replayed = ids(resumed.history)
    assert replayed == ids(sent[-len(replayed) :]) and len(replayed) >= 10


@pytest.mark.gen_test(timeout=30)
async def test_since_for_a_room_with_no_history_is_incomplete(make_server: Any) -> None:
    """An id this server never stored means the room's history was lost."""
    server = await make_server()
    client = await ChatClient.connect(server.port, "amnesia", since="1700000000000-0")
    assert client.history == [] and client.ready is not None
    assert client.ready["complete"] is False and client.ready["last_id"] is None


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_since_is_refused_at_the_handshake(make_server: Any) -> None:
    server = await make_server()
    with pytest.raises(HTTPClientError) as refused:
        await ChatClient.connect(server.port, "room", since="yesterday")
    assert refused.value.code == 400


@pytest.mark.gen_test(timeout=60)
async def test_joins_during_a_flood_see_a_gap_free_suffix(make_server: Any) -> None:
    server = await make_server(rate_limit=0, history=1000)
    watcher = await ChatClient.connect(server.port, "flood")
    sender = await ChatClient.connect(server.port, "flood")

    async def join_while_flooding() -> ChatClient:
        client = await ChatClient.connect(server.port, "flood", join=False)
        await client.read_join()
        return client

    flood = asyncio.ensure_future(say_all(sender, [f"f{k}" for k in range(300)]))
    joiners = []
    for _ in range(6):
        joiners.append(await join_while_flooding())
    await flood
    everything = ids(await watcher.messages(300, timeout=30))

    for joiner in joiners:
        seen = ids(joiner.history)
        assert joiner.ready is not None
        last = joiner.ready["last_id"]
        assert (seen[-1] if seen else None) == last
        live_count = 300 - (everything.index(last) + 1 if last else 0)
        seen += ids(await joiner.messages(live_count, timeout=20))
        assert seen == everything  # the whole flood, in order, once (history=1000)
    await sender.say("end")
    for joiner in joiners:  # and nothing twice: the next message after the flood is the marker
        assert [f["message"] for f in await joiner.messages(1)] == ["end"]


# ---- acknowledgements and resends ----------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_client_id_is_acknowledged_and_a_resend_is_not_published_twice(make_server: Any) -> None:
    server = await make_server()
    watcher = await ChatClient.connect(server.port, "acks")
    ann = await ChatClient.connect(server.port, "acks", user="ann")

    await ann.say("once", client_id="c-1")
    own = sorted([await ann.recv_chat(), await ann.recv_chat()], key=lambda f: f["type"])
    ack = own[0]
    [delivered] = await watcher.messages(1)
    assert ack == {"type": "ack", "client_id": "c-1", "id": delivered["id"]}
    assert own[1]["type"] == "message" and own[1]["id"] == delivered["id"]

    await ann.say("once", client_id="c-1")  # same connection
    assert (await ann.recv_type("ack")) == ack
    ann.close()
    again = await ChatClient.connect(server.port, "acks", user="ann")  # a new connection
    await again.say("once", client_id="c-1")
    assert (await again.recv_type("ack")) == ack

    await again.say("next")
    [after] = await watcher.messages(1)
    assert after["message"] == "next"  # the resends reached nobody


@pytest.mark.gen_test(timeout=30)
async def test_the_same_client_id_from_another_user_is_another_message(make_server: Any) -> None:
    server = await make_server()
    ann = await ChatClient.connect(server.port, "acks", user="ann")
    bob = await ChatClient.connect(server.port, "acks", user="bob")
    await ann.say("a", client_id="same")
    await bob.say("b", client_id="same")
    either = NOTICES + ("message",)  # the message and its ack may come in either order
    assert (await ann.recv_type("ack", skip=either))["id"] != (await bob.recv_type("ack", skip=either))["id"]


# ---- bad input -------------------------------------------------------------------

BAD_FRAMES = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_request"),
    ('"text"', "bad_request"),
    ("{}", "bad_request"),
    ('{"message": ""}', "bad_request"),
    ('{"message": 42}', "bad_request"),
    ('{"message": null}', "bad_request"),
    ('{"message": "x", "client_id": 7}', "bad_request"),
    ('{"message": "x", "client_id": "' + "c" * 65 + '"}', "bad_request"),
    ('{"message": "' + "é" * 4097 + '"}', "message_too_long"),
]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("raw,code", BAD_FRAMES)
async def test_bad_input_gets_an_error_frame_and_the_connection_lives_on(make_server: Any, raw: str, code: str) -> None:
    server = await make_server()
    watcher = await ChatClient.connect(server.port, "bad")
    client = await ChatClient.connect(server.port, "bad")
    client.send_raw(raw)
    error = await client.recv_type("error")
    assert error["error"] == code and error["detail"]

    await client.say("still here")
    for receiver in (client, watcher):
        [frame] = await receiver.messages(1)
        assert frame["message"] == "still here"  # nothing rejected reached anyone


@pytest.mark.gen_test(timeout=30)
async def test_limits_count_code_points_and_ignore_unknown_keys(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "bad")
    longest = "😀" * 4096  # 4096 code points, 16 KiB of UTF-8
    client.send({"message": longest, "client_id": "c" * 64, "colour": "red"})
    [frame] = await client.messages(1)
    assert frame["message"] == longest


@pytest.mark.gen_test(timeout=30)
async def test_a_rejected_message_with_client_id_names_it(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "bad")
    client.send({"message": "", "client_id": "c-9"})
    error = await client.recv_type("error")
    assert error["error"] == "bad_request" and error["client_id"] == "c-9"


@pytest.mark.gen_test(timeout=30)
async def test_a_binary_frame_is_a_bad_request(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "bad")
    client.send_raw(b'{"message": "hi"}', binary=True)
    assert (await client.recv_type("error"))["error"] == "bad_request"
    await client.say("ok")
    assert (await client.messages(1))[0]["message"] == "ok"


@pytest.mark.gen_test(timeout=30)
async def test_a_frame_over_64_kib_closes_with_1009(make_server: Any) -> None:
    server = await make_server()
    watcher = await ChatClient.connect(server.port, "big")
    client = await ChatClient.connect(server.port, "big")
    client.send({"message": "x" * (64 * 1024)})
    assert await client.wait_closed() == 1009
    still = await ChatClient.connect(server.port, "big")
    await still.say("after")
    assert (await watcher.messages(1))[0]["message"] == "after"  # the first message after: the big one reached nobody


@pytest.mark.gen_test(timeout=30)
async def test_over_the_rate_the_extra_messages_are_rate_limited(make_server: Any) -> None:
    server = await make_server(rate_limit=5, rate_burst=10)
    watcher = await ChatClient.connect(server.port, "rate")
    client = await ChatClient.connect(server.port, "rate")
    started = time.monotonic()
    for k in range(30):
        await client.say(f"m{k}", client_id=f"c{k}")
    acked: dict[str, str] = {}  # client_id -> message id
    refused: list[str] = []
    while len(acked) + len(refused) < 30:
        frame = await client.recv()
        if frame["type"] == "ack":
            acked[frame["client_id"]] = frame["id"]
        elif frame["type"] == "error":
            assert frame["error"] == "rate_limited", frame
            refused.append(frame["client_id"])
    elapsed = time.monotonic() - started
    # The burst of 10 at once, then 5 a second for however long this took on this machine.
    assert 10 <= len(acked) <= 10 + 5 * elapsed + 1, (len(acked), elapsed)
    assert sorted(acked.keys() | set(refused)) == sorted(f"c{k}" for k in range(30))
    delivered = await watcher.messages(len(acked))
    assert [f["message"] for f in delivered] == [f"m{cid[1:]}" for cid in acked]  # the accepted ones, in order
    assert [f["id"] for f in delivered] == list(acked.values())
    marker = await ChatClient.connect(server.port, "rate")
    await marker.say("end")
    assert [f["message"] for f in await watcher.messages(1)] == ["end"]  # the refused ones reached nobody


# ---- slow clients ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_stops_reading_is_dropped_with_1008_without_slowing_the_room(make_server: Any) -> None:
    # Large messages, so that the kernel's buffers fill after few of them; one
    # at a time, so that a reader's burst (a Redis read of many) stays under the bound.
    server = await make_server(rate_limit=0, send_buffer_limit=256 * 1024, max_message_chars=60_000)
    status, stuck = await raw_handshake(server.port, "/ws/chat/slow/", receive_buffer=4096)  # never reads
    assert status == 101
    reader = await ChatClient.connect(server.port, "slow")
    sender = await ChatClient.connect(server.port, "slow")
    text = "y" * 60_000
    try:
        with capture_logs() as logs:
            for _ in range(1000):  # at most 60 MB, far more than the kernel buffers on loopback
                await sender.say(text)
                for client in (reader, sender):  # the room keeps flowing meanwhile
                    assert len(await client.messages(1, timeout=10)) == 1
                if len(server.registry.sockets) == 2:
                    break
        assert len(server.registry.sockets) == 2, "the stuck client was never dropped"
    finally:
        stuck.close()
    # The close frame cannot reach a client that does not read: the server's log tells the code.
    [dropped] = [e for e in logs if e["event"] == "ws.disconnect"]
    assert dropped["code"] == 1008
    assert [e["event"] for e in logs].count("ws.slow_consumer") == 1
    samples = await scrape(server.port)  # what an operator sees of it
    assert value(samples, "chat_slow_clients_dropped_total") == 1
    assert value(samples, "chat_websocket_closes_total", code="1008") == 1


# ---- origin ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_foreign_origin_is_refused_with_403(make_server: Any) -> None:
    server = await make_server()
    for origin in ("http://evil.example", f"http://127.0.0.1:{server.port + 1}", "null"):
        with pytest.raises(HTTPClientError) as refused:
            await ChatClient.connect(server.port, "o", headers={"Origin": origin})
        assert refused.value.code == 403


@pytest.mark.gen_test(timeout=30)
async def test_same_host_no_origin_and_allowed_origins_are_accepted(make_server: Any) -> None:
    server = await make_server(allowed_origins=("https://chat.example.com",))
    for headers in ({"Origin": f"http://127.0.0.1:{server.port}"}, {}, {"Origin": "https://chat.example.com"}):
        client = await ChatClient.connect(server.port, "o", headers=headers)
        assert client.ready is not None


@pytest.mark.gen_test(timeout=30)
async def test_forwarded_host_counts_only_behind_a_proxy(make_server: Any) -> None:
    """X-Forwarded-Host names the public host only when the server trusts its proxy."""
    headers = {
        "Origin": "https://chat.example.com",
        "X-Forwarded-Host": "chat.example.com",
        "X-Forwarded-Proto": "https",
    }
    direct = await make_server()
    with pytest.raises(HTTPClientError) as refused:
        await ChatClient.connect(direct.port, "o", headers=headers)
    assert refused.value.code == 403

    proxied = await make_server(behind_proxy=True)
    client = await ChatClient.connect(proxied.port, "o", headers=headers)
    assert client.ready is not None


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
def test_server_text_frames_carry_the_rfc_6455_length_forms(length: int, header: bytes) -> None:
    payload = b"x" * length
    assert text_frame(payload) == header + payload
