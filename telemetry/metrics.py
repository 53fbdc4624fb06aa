"""Prometheus metrics of one server process, served at ``/metrics``.

Each ``ChatServer`` owns one ``Metrics`` and so one ``CollectorRegistry``:
nothing is registered in prometheus_client's global registry, so several
servers in one process (the tests) count apart. Handlers get the instance
through ``initialize()`` and know it only as
``handlers.socket_metrics.SocketMetrics``; the RoomBus reports fan-out
through the ``FanoutObserver`` protocol, which ``Metrics`` implements.

Every process exposes only its own counts; a deployment of several processes
is scraped target by target and summed across ``instance`` (README, "Metrics").

The four instruments touched on every message (published, delivered, publish
time, fan-out age) are plain numbers on the event loop's thread, read by a
collector at scrape time: prometheus_client's own take a lock per update, six
a message, a cost on the hot path for nothing (bench/RESULTS.md, "Measurements formerly in code comments").
Everything else uses prometheus_client's classes.

The registry also holds prometheus_client's process, platform and GC
collectors (``process_*``: memory, CPU, descriptors, start time), and the
figures sampled every ``--metrics-interval`` (telemetry/operator_metrics.py).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from functools import partial
from typing import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString
from tornado.web import RequestHandler

from telemetry.operator_metrics import OperatorView

# A ``_created`` series per counter and histogram (the time it was made) is
# noise on a dashboard and doubles the series count; Prometheus does not need
# it to compute rates. The switch is prometheus_client's, process-wide.
disable_created_metrics()

# The error codes of docs/protocol.md ("Errors"); listed so every series exists at 0
# from the start and a rate() over it does not miss the first rejection.
REJECT_REASONS = (
    "bad_json",
    "bad_request",
    "message_too_long",
    "rate_limited",
    "unavailable",
    "not_found",
    "not_allowed",
    "muted",
)
REFUSE_REASONS = (
    "server_full",
    "client_full",
    "join_rate",
    "room_create_rate",
)  # the handshake's 503 and 429s (docs/protocol.md)
# The close codes this server sends or sees (README, "Metrics"); 1006 stands
# for a connection that ended with no close frame. Anything else is "other",
# so a client choosing codes cannot make series without bound.
CLOSE_CODES = ("1000", "1001", "1002", "1006", "1007", "1008", "1009", "1011", "1013", "4001", "4003")
# Join: history read and subscription; replay: history written up to ``ready``.
JOIN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REPLAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0)

# Publish is a local append (memory) or one XADD round trip (Redis) and times
# out after redis_timeout (1 s by default): buckets from 100 µs to 2.5 s.
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Fan-out age spans a local hop (sub-millisecond) up to a consumer catching up
# after a Redis outage (seconds).
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopHistogram:
    """A histogram updated from one thread only (the event loop's): no lock, one list slot per observation."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: over every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # Prometheus buckets are "<= le"
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class _HotPath:
    """The per-message instruments, as numbers the collector reads at scrape time."""

    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        self.publish_seconds = LoopHistogram(PUBLISH_BUCKETS)
        self.fanout_seconds = LoopHistogram(FANOUT_BUCKETS)
        self.join_seconds = LoopHistogram(JOIN_BUCKETS)
        self.replay_seconds = LoopHistogram(REPLAY_BUCKETS)
        # room -> messages fanned out since the last sample (a defaultdict: "+= 1" is the cheapest count)
        self.room_messages: defaultdict[str, int] = defaultdict(int)

    def take_room_messages(self) -> dict[str, int]:
        """The per-room counts since the last call, starting new ones (the sampler's, every interval)."""
        counts, self.room_messages = self.room_messages, defaultdict(int)
        return counts

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "chat_messages_published", "Messages accepted and stored on the bus (resends not counted).", self.published
        )
        yield CounterMetricFamily(
            "chat_messages_delivered", "Messages handed to local sockets, one per recipient.", self.delivered
        )
        yield self.publish_seconds.family(
            "chat_bus_publish_seconds", "Time to store one message on the bus, failures included."
        )
        yield self.fanout_seconds.family(
            "chat_fanout_seconds", "Age of a message (from its id's timestamp) when fanned out here."
        )
        yield self.join_seconds.family(
            "chat_join_seconds", "Time from a WebSocket's join to its history being read (subscription included)."
        )
        yield self.replay_seconds.family(
            "chat_replay_seconds", "Time to write a join's history replay up to its ready frame."
        )


class Metrics:
    """The instruments of the README's "Metrics" table, registered in a registry of their own."""

    def __init__(self, top_rooms: int = 10) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # Every instrument in this process's own registry, never the global one.
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        self.connections = gauge("chat_connections", "Open room WebSockets on this process.")
        self.rooms = gauge("chat_rooms", "Rooms with at least one member on this process.")
        self.hot = _HotPath()
        self.registry.register(self.hot)  # a collector: read at scrape time
        self.rejected_total = counter("chat_messages_rejected", "Client messages refused, by error code.", ["reason"])
        self.bus_reconnects_total = counter(
            "chat_bus_reconnects", "Times the bus backend reconnected after losing its server."
        )
        self.bus_out_of_memory_total = counter(
            "chat_bus_out_of_memory",
            "Writes Redis refused for lack of memory (maxmemory, noeviction); a message refused so is unavailable.",
        )
        self.refused_total = counter(
            "chat_connections_refused",
            "WebSocket handshakes refused by a connection or join limit, by reason.",
            ["reason"],
        )
        self.log_lines_dropped = gauge("chat_log_lines_dropped", "Log lines dropped because stdout was not being read.")
        self.api_requests_total = counter(
            "chat_api_requests", "Server API requests, by route and status.", ["route", "status"]
        )
        self.closes_total = counter(
            "chat_websocket_closes",
            "Room WebSockets closed, by close code (the server's, else the client's; 1006: none).",
            ["code"],
        )
        self.slow_clients_dropped_total = counter(
            "chat_slow_clients_dropped", "Clients dropped (close 1008) because their unsent data passed the bound."
        )
        self.view = OperatorView(top_rooms)
        self.registry.register(self.view)
        # Each code's child looked up once: labels() costs a lock and a tuple per call.
        self._closes = {code: self.closes_total.labels(code=code) for code in (*CLOSE_CODES, "other")}
        for reason in REJECT_REASONS:
            self.rejected_total.labels(reason=reason)
        for reason in REFUSE_REASONS:
            self.refused_total.labels(reason=reason)

    def count_rooms_with(self, room_count: Callable[[], int]) -> None:
        """Read ``chat_rooms`` from the bus at scrape time rather than tracking it twice."""
        self.rooms.set_function(room_count)

    def connection_opened(self) -> None:
        self.connections.inc()

    def connection_closed(self, code: int | None) -> None:
        self.connections.dec()
        closes = self._closes
        (closes.get("1006" if code is None else str(code)) or closes["other"]).inc()

    def slow_client_dropped(self) -> None:
        self.slow_clients_dropped_total.inc()

    def join_took(self, seconds: float) -> None:
        self.hot.join_seconds.observe(seconds)

    def replay_took(self, seconds: float) -> None:
        self.hot.replay_seconds.observe(seconds)

    def connection_refused(self, reason: str) -> None:
        self.refused_total.labels(reason=reason).inc()

    def publish_took(self, seconds: float) -> None:
        self.hot.publish_seconds.observe(seconds)

    def count_dropped_log_lines_with(self, dropped: Callable[[], int]) -> None:
        """Read ``chat_log_lines_dropped`` from the log writer at scrape time."""
        self.log_lines_dropped.set_function(dropped)

    def message_published(self) -> None:
        self.hot.published += 1

    def message_rejected(self, reason: str) -> None:
        self.rejected_total.labels(reason=reason).inc()

    def api_request(self, route: str, status: int) -> None:
        """One server API request answered (``route``: its OpenAPI path, or ``other``)."""
        self.api_requests_total.labels(route=route, status=str(status)).inc()

    def bus_reconnected(self) -> None:
        """For the Redis backend: call once each time it is connected again after a failure."""
        self.bus_reconnects_total.inc()

    def bus_out_of_memory(self) -> None:
        """For the Redis backend: call each time Redis refuses a write for lack of memory."""
        self.bus_out_of_memory_total.inc()

    # ---- bus.room_bus.FanoutObserver ---------------------------------------

    def delivered(self, room: str, recipients: int, age_seconds: float) -> None:
        """One message fanned out to ``recipients`` local members, ``age_seconds`` after it was stored."""
        hot = self.hot
        hot.delivered += recipients
        # Per room, for the top-rooms figures; the sampler empties it every interval.
        hot.room_messages[room] += 1
        # Clocks of two processes may disagree by a little; never observe a negative age.
        hot.fanout_seconds.observe(max(0.0, age_seconds))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsHandler(RequestHandler):
    """``GET /metrics``: this process's registry in the Prometheus text format."""

    def initialize(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(self._metrics.exposition())
