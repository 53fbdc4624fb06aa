"""One serving process's parts, wired: the bus, moderation, metrics, sockets, the application and its listeners.

``ChatServer`` starts them in order and stops them in order: stop accepting,
close every WebSocket with 1001, close the bus.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import structlog
import tornado.httpserver

from api.app import ApiServer, listen_on, make_api_app
from api.base import ApiContext
from api.keys import ApiKeys
from bus.backend import Backend
from bus.memory import MemoryBackend
from bus.memory_store import MessageStore, StoreSanctions
from bus.moderation import MemoryModeration, Moderation
from bus.redis import RedisBroker, RedisOptions
from bus.room_bus import RoomBus
from config.same_named import same_named
from config.settings import Settings
from handlers.moderated import close_user
from handlers.pings import PingWheel
from handlers.proxies import address_key
from handlers.proxies import policy as proxy_policy
from handlers.room_socket import CLOSE_GOING_AWAY, SocketLimits, SocketRegistry
from handlers.socket_state import SocketContext
from handlers.tokens import TokenVerifier
from handlers.websocket.accept import (
    AddressCap,
    GuardedHTTPServer,
    connection_cap,
    log_descriptor_limit,
    raise_descriptor_limit,
)
from runtime.app import make_app
from telemetry.metrics import Metrics
from telemetry.metrics_sampler import MetricsSampler
from telemetry.status import ProcessFacts, StatusReporter

log = structlog.get_logger("chat.server")
# Handshakes waiting to be accepted. Tornado's 128 is short for thousands of
# pages reconnecting at once after a restart (nginx then sees refusals). When
# a process dies and 5,000 of its pages come back through nginx to one other
# process within a second, 1,024 overflowed: SYNs dropped, retried 1 s and 3 s
# later, past nginx's 2 s connect timeout (504s; bench/storm.py). The kernel
# caps it at net.core.somaxconn (4096 on current kernels).
LISTEN_BACKLOG = 4096


def redis_options(settings: Settings) -> RedisOptions:
    """The Redis bus's share of the settings: each option from the setting of its name, or as given here."""
    return same_named(
        RedisOptions,
        settings,
        url=settings.redis_url or "",
        cluster=settings.redis_cluster,
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout_ms=settings.redis_wait_timeout,
    )


def build_backend(settings: Settings, metrics: Metrics) -> Backend:
    if settings.redis_url:
        return RedisBroker(
            redis_options(settings), on_recovered=metrics.bus_reconnected, on_out_of_memory=metrics.bus_out_of_memory
        )
    store = MessageStore(settings.data_file, settings.commit_window / 1000) if settings.data_file else None
    return MemoryBackend(
        settings.retention,
        settings.resend_window,
        settings.room_ttl,
        store,
        history_bytes=settings.history_bytes,
        memory_budget=settings.memory_budget,
    )


def build_moderation(backend: Backend) -> Moderation:
    """Bans and mutes where the bus keeps its rooms: Redis, or this process.

    With ``--data-file`` the in-process store keeps them in that file too (a
    table of its own), so that they survive a restart of the single process.
    """
    if isinstance(backend, RedisBroker):
        return backend.moderation()
    if isinstance(backend, MemoryBackend) and backend.store is not None:
        return MemoryModeration(StoreSanctions(backend.store))
    return MemoryModeration()


class ChatServer:
    """One process: bus, application, HTTP server; started and stopped in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One registry per server: several servers in one process count apart.
        self.metrics = Metrics(settings.metrics_top_rooms)
        backend = build_backend(settings, self.metrics)
        self.bus = RoomBus(backend, settings.history, observer=self.metrics)
        self.moderation = build_moderation(backend)
        self.sampler = MetricsSampler(self.metrics, self.bus, settings.metrics_interval)  # chat_rooms, lag, top rooms
        self.registry = SocketRegistry(PingWheel(settings.ping_interval, settings.ping_timeout))
        descriptors = raise_descriptor_limit()
        cap = connection_cap(settings.max_connections, descriptors)
        log_descriptor_limit(settings.max_connections, descriptors, cap)
        self.limits = SocketLimits.from_settings(settings, cap)
        # Token mode (identity from the host site) when a token key is configured.
        self.tokens = TokenVerifier(settings) if settings.token_mode else None
        context = SocketContext(
            self.bus, settings, self.registry, self.metrics, self.limits, self.tokens, self.moderation
        )
        self.app = make_app(context, self.metrics)
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port = settings.port
        facts = ProcessFacts(
            settings.node_id, "", None, self.bus, lambda: len(self.registry.sockets), lambda: self.metrics.hot.delivered
        )
        self.status = StatusReporter(facts, settings.status_interval)
        self.api = self._api_server(settings)

    def _api_server(self, settings: Settings) -> ApiServer | None:
        """The server API's own listener, when ``--api-port`` is set."""
        if settings.api_port is None:
            return None
        keys = ApiKeys(settings.api_keys, settings.api_rate_limit, settings.api_rate_burst)
        context = ApiContext(self.bus, self.moderation, settings, keys, self.metrics, self.status)
        app = make_api_app(context, settings.api_host, settings.allowed_hosts)
        return ApiServer(app, settings.api_host, settings.api_port, settings.header_timeout)

    def _disconnected(self, user: str, room: str | None) -> None:
        close_user(self.registry.sockets, user, room)

    async def start(self) -> None:
        await self.bus.start()
        await self.moderation.start(self._disconnected)
        self.listen()
        if self.api is not None:
            self.api.listen()
        self.status.facts.address = f"{self.settings.host}:{self.port}"
        self.status.facts.api = f"{self.api.host}:{self.api.port}" if self.api is not None else None
        self.status.start()
        self.sampler.start()
        log.info(
            "server.started",
            host=self.settings.host,
            port=self.port,
            bus=("redis-cluster" if self.settings.redis_cluster else "redis") if self.settings.redis_url else "memory",
            api_port=self.api.port if self.api is not None else None,
        )

    def listen(self) -> None:
        """Accept connections on the configured port (the bound one after a first listen)."""
        settings = self.settings
        self.http = GuardedHTTPServer(
            self.app,
            xheaders=settings.behind_proxy,
            trusts_peer=proxy_policy(settings.forwarded_allow_ips).trusts,
            per_address=http_connection_cap(settings, lambda: self.metrics.connection_refused("http_client_full")),
            # Tornado's defaults (100 MB bodies, an hour for headers) let a
            # few clients hold the memory and the sockets of the process.
            max_body_size=settings.max_body_bytes,
            max_buffer_size=max(settings.max_body_bytes, 1 << 20),
            idle_connection_timeout=settings.header_timeout,
            body_timeout=settings.header_timeout,
        )
        self.port = listen_on(self.http, self.settings.host, self.port, LISTEN_BACKLOG)

    async def stop(self) -> None:
        """Stop accepting, close sockets with 1001, wait for them, close the bus."""
        if self.http is not None:
            self.http.stop()
        await self.status.stop()
        if self.api is not None:
            await self.api.stop()
        await self.sampler.stop()
        self.registry.close_all(CLOSE_GOING_AWAY, "server shutting down")
        await self.registry.wait_empty(self.settings.shutdown_timeout)
        if self.registry.pings is not None:
            self.registry.pings.stop()
        if self.http is not None:
            await asyncio.wait_for(self.http.close_all_connections(), timeout=1.0)
        await self.moderation.close()
        await self.bus.close(self.settings.shutdown_timeout)
        log.info("server.stopped", open_sockets=len(self.registry.sockets))


def http_connection_cap(settings: Settings, on_refused: Callable[[], None]) -> AddressCap | None:
    """The cap on one address's open HTTP connections; the proxy, which speaks for everyone, is not capped."""
    limit = settings.max_http_connections_per_client
    if limit is None:
        limit = settings.max_connections_per_client  # a client's WebSockets each begin as an HTTP connection
    if limit <= 0:
        return None
    trusted = proxy_policy(settings.forwarded_allow_ips).trusts
    exempt = trusted if settings.behind_proxy else lambda _address: False
    return AddressCap(limit, address_key, exempt, on_refused)
