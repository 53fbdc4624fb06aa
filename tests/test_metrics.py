"""``/metrics`` in the Prometheus text format, one registry per server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from telemetry.metrics import Metrics
from tests.client import NOTICES, ChatClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
NAMES = {
    "chat_connections",
    "chat_rooms",
    "chat_messages_published",
    "chat_messages_delivered",
    "chat_messages_rejected",
    "chat_bus_publish_seconds",
    "chat_fanout_seconds",
    "chat_bus_reconnects",
}


async def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics", request_timeout=5)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    families = list(text_string_to_metric_families(response.body.decode()))
    assert NAMES <= {family.name for family in families}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def messages_and_acks(client: ChatClient, messages: int, acks: int) -> None:
    """Read until this many messages and acks came: an ack follows its message's counting."""
    seen = {"message": 0, "ack": 0}
    while seen != {"message": messages, "ack": acks}:
        frame = await client.recv()
        if frame["type"] in seen:
            seen[frame["type"]] += 1


async def until(port: int, name: str, expected: float, timeout: float = 5.0) -> Samples:
    """Scrape until a sample reaches a value (a close is logged after the client sees it)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(port)
        if value(samples, name) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.02)


@pytest.mark.gen_test(timeout=20)
async def test_ten_messages_to_a_room_of_three_publish_10_and_deliver_30(make_server: Any) -> None:
    server = await make_server()
    clients = [await ChatClient.connect(server.port, "trio", user=f"u{n}") for n in range(3)]
    before = await scrape(server.port)
    for n in range(10):
        await clients[n % 3].say(f"m{n}", client_id=f"c{n}")
    for index, client in enumerate(clients):
        await messages_and_acks(client, 10, len(range(index, 10, 3)))
    after = await scrape(server.port)
    moved = {
        name: value(after, name) - value(before, name)
        for name in (
            "chat_messages_published_total",
            "chat_messages_delivered_total",
            "chat_bus_publish_seconds_count",
            "chat_fanout_seconds_count",
        )
    }
    assert moved == {
        "chat_messages_published_total": 10,
        "chat_messages_delivered_total": 30,
        "chat_bus_publish_seconds_count": 10,
        "chat_fanout_seconds_count": 10,
    }
    assert value(after, "chat_connections") == 3 and value(after, "chat_rooms") == 1


@pytest.mark.gen_test(timeout=20)
async def test_rejections_count_by_reason_and_resends_are_not_published_again(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "r", user="ann")
    client.send_raw("{oops")
    await client.recv_type("error")
    client.send({"message": ""})
    await client.recv_type("error")
    for _ in range(2):  # the second is a resend of the first
        await client.say("once", client_id="c1")
        await client.recv_type("ack", skip=NOTICES + ("message",))
    samples = await scrape(server.port)
    assert value(samples, "chat_messages_rejected_total", reason="bad_json") == 1
    assert value(samples, "chat_messages_rejected_total", reason="bad_request") == 1
    assert value(samples, "chat_messages_rejected_total", reason="rate_limited") == 0
    assert value(samples, "chat_messages_published_total") == 1


@pytest.mark.gen_test(timeout=20)
async def test_connections_and_rooms_fall_back_when_clients_leave(make_server: Any) -> None:
    server = await make_server()
    clients = [await ChatClient.connect(server.port, room) for room in ("a", "b")]
    assert value(await scrape(server.port), "chat_rooms") == 2
    for client in clients:
        client.close()
        await client.wait_closed()
    samples = await until(server.port, "chat_connections", 0)
    assert value(samples, "chat_connections") == 0
    samples = await until(server.port, "chat_rooms", 0)
    assert value(samples, "chat_rooms") == 0


@pytest.mark.gen_test(timeout=20)
async def test_two_servers_in_one_process_count_apart(make_server: Any) -> None:
    first, second = await make_server(), await make_server()
    client = await ChatClient.connect(first.port, "r")
    await client.say("only on the first", client_id="c1")
    await messages_and_acks(client, 1, 1)
    assert value(await scrape(first.port), "chat_messages_published_total") == 1
    assert value(await scrape(second.port), "chat_messages_published_total") == 0
    assert value(await scrape(second.port), "chat_connections") == 0


def test_bus_reconnects_are_counted_for_the_backend() -> None:
    metrics = Metrics()
    metrics.bus_reconnected()
    metrics.bus_reconnected()
    assert metrics.registry.get_sample_value("chat_bus_reconnects_total") == 2


def test_a_fanout_age_from_a_clock_ahead_is_observed_as_zero() -> None:
    metrics = Metrics()
    metrics.delivered("r", 2, -0.5)
    assert metrics.registry.get_sample_value("chat_fanout_seconds_bucket", {"le": "0.0005"}) == 1
    assert metrics.registry.get_sample_value("chat_messages_delivered_total") == 2
