"""The operator's share of ``/metrics``: process series, closes by code, join and replay times, top rooms, lag."""

from __future__ import annotations

from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.client import ChatClient
from tests.helpers import eventually
from tests.test_metrics import Samples, scrape, value


async def exposition(port: int) -> str:
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics", request_timeout=5)
    return response.body.decode()


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    """label value -> sample value, for every sample of ``name``."""
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


@pytest.mark.gen_test(timeout=20)
async def test_process_series_are_exported_and_no_created_series(make_server: Any) -> None:
    server = await make_server()
    text = await exposition(server.port)
    samples = await scrape(server.port)
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert value(samples, name) > 0, name
    assert value(samples, "process_start_time_seconds") > 1_700_000_000
    assert any(name == "python_info" for name, _ in samples)
    assert "_created" not in text


@pytest.mark.gen_test(timeout=20)
async def test_closes_are_counted_by_code_with_unknown_codes_as_other(make_server: Any) -> None:
    server = await make_server()
    before = labelled(await scrape(server.port), "chat_websocket_closes_total", "code")
    assert {"1000", "1001", "1006", "1008", "1009", "other"} <= before.keys()
    normal, lost, odd = [await ChatClient.connect(server.port, "closes") for _ in range(3)]
    normal.conn.close(1000)
    lost.drop()
    odd.conn.close(3999)

    async def counted() -> bool:
        after = labelled(await scrape(server.port), "chat_websocket_closes_total", "code")
        return {code: after[code] - before[code] for code in ("1000", "1006", "other")} == {
            "1000": 1,
            "1006": 1,
            "other": 1,
        }

    await eventually(counted, 5, "one close each of 1000, 1006 (no close frame) and other (3999)")
    assert value(await scrape(server.port), "chat_connections") == 0


@pytest.mark.gen_test(timeout=20)
async def test_each_join_is_timed_once_for_its_history_and_once_for_its_replay(make_server: Any) -> None:
    server = await make_server()
    before = await scrape(server.port)
    first = await ChatClient.connect(server.port, "timed")
    await first.say("hello", client_id="c1")
    await first.recv_type("ack", skip=("presence", "message"))
    await ChatClient.connect(server.port, "timed")  # replays one message
    after = await scrape(server.port)
    for name in ("chat_join_seconds_count", "chat_replay_seconds_count"):
        assert value(after, name) - value(before, name) == 2, name
    assert value(after, "chat_members") == 2


@pytest.mark.gen_test(timeout=30)
async def test_only_the_busiest_rooms_get_a_room_label(make_server: Any) -> None:
    server = await make_server(metrics_top_rooms=2, metrics_interval=0.2)
    rooms = {"quiet": 0, "busy": 6, "busier": 9}
    for room, messages in rooms.items():
        client = await ChatClient.connect(server.port, room)
        for n in range(messages):
            await client.say(f"m{n}")
        await client.messages(messages)
    await server.sampler.sample()  # the interval's counts, now

    samples = await scrape(server.port)
    rates = labelled(samples, "chat_top_room_messages_per_second", "room")
    assert rates.keys() == {"busy", "busier"}
    assert rates["busier"] > rates["busy"] > 0
    assert labelled(samples, "chat_top_room_members", "room") == {"busy": 1, "busier": 1}


@pytest.mark.parametrize("backend", ["redis"])
@pytest.mark.gen_test(timeout=30)
async def test_reader_lag_is_sampled_per_shard_and_per_node(make_server: Any) -> None:
    one = await make_server(node_id="node-one", metrics_interval=0.2)
    two = await make_server(node_id="node-two", metrics_interval=0.2)
    a = await ChatClient.connect(one.port, "lagged")
    await ChatClient.connect(two.port, "lagged")
    await two.sampler.stop()
    # node-two stops delivering: its reader leaves the room's stream unread.
    await two.bus.backend._consumer._holder["lagged"].stop()  # noqa: SLF001
    for n in range(5):
        await a.say(f"m{n}")
    await a.messages(5)

    async def lag_seen() -> bool:
        samples = await scrape(one.port)
        nodes = labelled(samples, "chat_consumer_lag_entries", "node")
        seconds = labelled(samples, "chat_consumer_lag_seconds", "node")
        return nodes.get("node-two") == 5 and nodes.get("node-one") == 0 and seconds["node-two"] > 0

    await eventually(lag_seen, 10, "node-one sees node-two 5 entries behind, itself none")
    samples = await scrape(one.port)
    [shard] = labelled(samples, "chat_reader_lag_entries", "shard")
    assert value(samples, "chat_reader_lag_entries", shard=shard) == 0
    assert value(samples, "chat_reader_pending_entries", shard=shard) == 0
    assert value(samples, "chat_ready") == 1
    assert value(samples, "chat_bus_failing_shards") == 0
