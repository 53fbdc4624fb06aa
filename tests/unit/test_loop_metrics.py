"""The per-message instruments, kept as plain numbers (telemetry/metrics.py), expose what prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from telemetry.metrics import FANOUT_BUCKETS, Metrics


def _samples(exposition: bytes, name: str) -> list[str]:
    return [line for line in exposition.decode().splitlines() if line.startswith(name) and "_created" not in line]


def test_the_fanout_histogram_matches_prometheus_clients_own_bucket_for_bucket() -> None:
    ages = [0.0, 0.0005, 0.0004999, 0.0005001, 0.003, 0.0099, 0.01, 9.99, 10.0, 10.01, 120.0]
    theirs = CollectorRegistry()
    reference = Histogram("chat_fanout_seconds", "Age.", buckets=FANOUT_BUCKETS, registry=theirs)
    metrics = Metrics()
    for age in ages:
        reference.observe(age)
        metrics.delivered("room", 2, age)
    ours = generate_latest(metrics.registry)
    assert _samples(ours, "chat_fanout_seconds") == _samples(generate_latest(theirs), "chat_fanout_seconds")
    assert "chat_messages_delivered_total 22.0" in ours.decode()


def test_published_counts_and_publish_times_are_exposed() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.message_published()
    metrics.publish_took(0.0002)
    metrics.publish_took(3.0)
    text = generate_latest(metrics.registry).decode()
    assert "chat_messages_published_total 3.0" in text
    assert 'chat_bus_publish_seconds_bucket{le="0.00025"} 1.0' in text
    assert 'chat_bus_publish_seconds_bucket{le="2.5"} 1.0' in text
    assert 'chat_bus_publish_seconds_bucket{le="+Inf"} 2.0' in text
    assert "chat_bus_publish_seconds_count 2.0" in text
