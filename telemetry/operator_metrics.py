"""The operator's figures of ``/metrics``: readiness, members, reader lag and the busiest rooms.

A collector read at scrape time. Members, readiness and failing shards are
asked of the bus then (cheap, no I/O); lag and the top rooms are what the
sampler (telemetry/metrics_sampler.py) last found, every ``--metrics-interval``
seconds, so a scrape never waits on Redis.

Labels stay bounded: ``shard`` (Redis masters), ``node`` (processes of the
deployment), and ``room`` only for the ``--metrics-top-rooms`` busiest rooms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from bus.redis.lag import Lag, LagReport


@dataclass(frozen=True)
class TopRoom:
    room: str
    members: int  # on this process
    messages_per_second: float  # fanned out here, over the last interval


class OperatorView:
    def __init__(self, top_rooms: int = 10) -> None:
        self.top_rooms = top_rooms
        self.lag: LagReport | None = None  # None: not sampled (the in-process bus has no readers)
        self.top: list[TopRoom] = []
        self.members: Callable[[], list[tuple[str, int]]] = list
        self.ready: Callable[[], bool] = lambda: True
        self.failing_shards: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "chat_ready", "1 while the bus can publish (/readyz answers 200), else 0.", 1.0 if self.ready() else 0.0
        )
        yield GaugeMetricFamily(
            "chat_members", "Room members (joined WebSockets) on this process.", sum(n for _, n in self.members())
        )
        yield GaugeMetricFamily(
            "chat_bus_failing_shards",
            "Redis masters this process cannot reach now (an outage or a failover under way).",
            self.failing_shards(),
        )
        yield from self._lag()
        yield from self._top()

    def _lag(self) -> Iterator[Metric]:
        report = self.lag or LagReport()
        own = [
            ("chat_reader_lag_entries", "Entries stored in this process's rooms, not yet delivered here.", "entries"),
            ("chat_reader_lag_seconds", "Age of the oldest entry not yet delivered here (Redis clock).", "seconds"),
            ("chat_reader_pending_entries", "Entries read and not acknowledged (reads are NOACK: 0).", "pending"),
            ("chat_reader_oldest_pending_seconds", "Idle time of the oldest unacknowledged entry.", "pending_seconds"),
        ]
        yield from _lag_families(own, "shard", report.own)
        peers = [
            ("chat_consumer_lag_entries", "Entries behind, per process (node), over the rooms held here.", "entries"),
            ("chat_consumer_lag_seconds", "Age of the oldest entry a process (node) has not delivered.", "seconds"),
        ]
        yield from _lag_families(peers, "node", report.nodes)

    def _top(self) -> Iterator[Metric]:
        members = GaugeMetricFamily(
            "chat_top_room_members", "Members on this process of its busiest rooms.", labels=["room"]
        )
        rate = GaugeMetricFamily(
            "chat_top_room_messages_per_second",
            "Messages per second fanned out here in its busiest rooms (last interval).",
            labels=["room"],
        )
        for top in self.top:
            members.add_metric([top.room], top.members)
            rate.add_metric([top.room], top.messages_per_second)
        yield members
        yield rate


def _lag_families(table: list[tuple[str, str, str]], label: str, lags: Mapping[str, Lag]) -> Iterator[Metric]:
    """A gauge per (name, help, Lag attribute) of ``table``, with a child per ``label`` value of ``lags``."""
    for name, text, attribute in table:
        family = GaugeMetricFamily(name, text, labels=[label])
        for key, lag in sorted(lags.items()):
            family.add_metric([key], _figure(lag, attribute))
        yield family


def _figure(lag: Lag, attribute: str) -> float:
    return float(getattr(lag, attribute))
