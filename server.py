"""Room chat server: ``python server.py [flags]`` serves one process;
``python server.py report [...]`` summarises its logs (ops/report.py);
``python server.py cluster [...]`` runs N processes behind nginx (ops/cluster_cli.py);
``python server.py status [...]`` shows a running deployment's processes (ops/status_cli.py).

Start-up reads the settings once, sets up logging, builds the bus (Redis
streams when a Redis URL is set, else in-process), the Tornado application,
and serves until SIGTERM or SIGINT, then shuts down in order: stop accepting,
close every WebSocket with 1001, close the bus.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import pwd
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Sequence, TextIO, cast

import structlog
import tornado.httpserver
import tornado.web
import uvloop

from api.app import ApiServer, listen_on, make_api_app
from api.base import ApiContext
from api.keys import ApiKeys
from bus.backend import Backend
from bus.memory import MemoryBackend
from bus.memory_store import MessageStore, StoreError, StoreSanctions
from bus.moderation import MemoryModeration, Moderation
from bus.redis import RedisBroker, RedisOptions
from bus.room_bus import RoomBus
from config.log_writer import NonBlockingLineWriter
from config.logging import configure_logging, stdout_writer
from config.same_named import same_named
from config.settings import Settings, SettingsError, load_settings
from handlers.health import HealthHandler, ReadyHandler
from handlers.hosts import host_policy
from handlers.join_gate import JoinCheckedApplication, JoinGate
from handlers.moderated import close_user
from handlers.pages import LobbyHandler, NotFoundHandler, RoomPageHandler, UserNameHandler
from handlers.pings import PingWheel
from handlers.proxies import address_key
from handlers.proxies import policy as proxy_policy
from handlers.room_socket import CLOSE_GOING_AWAY, RoomSocket, SocketLimits, SocketRegistry
from handlers.tokens import TokenVerifier
from handlers.websocket.accept import (
    AddressCap,
    GuardedHTTPServer,
    connection_cap,
    log_descriptor_limit,
    raise_descriptor_limit,
)
from handlers.websocket.guard import tornado_problems
from ops.metrics import Metrics, MetricsHandler
from ops.metrics_sampler import MetricsSampler
from ops.status import ProcessFacts, StatusReporter

ROOT = Path(__file__).resolve().parent
log = structlog.get_logger("chat.server")
# Handshakes waiting to be accepted. Tornado's 128 is short for thousands of
# pages reconnecting at once after a restart (nginx then sees refusals);
# the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024


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


def _log_request(handler: tornado.web.RequestHandler) -> None:
    request = handler.request
    if isinstance(handler, RoomSocket) and handler.get_status() == 429:
        return  # a flood is made of these: ws.refused logs them, sampled
    log.info(
        "http.request",
        method=request.method,
        path=request.path,
        status=handler.get_status(),
        duration_ms=round(request.request_time() * 1000, 2),
        client=request.remote_ip,
    )


def page_token_settings(settings: Settings) -> dict[str, str] | None:
    """What the room page needs in token mode (None otherwise): where it gets fresh tokens."""
    if not settings.token_mode:
        return None
    return {"refresh_url": settings.token_refresh_url}


def _no_request_log(handler: tornado.web.RequestHandler) -> None:
    return None


def make_app(
    settings: Settings,
    bus: RoomBus,
    registry: SocketRegistry,
    metrics: Metrics,
    limits: SocketLimits,
    tokens: TokenVerifier | None = None,
    moderation: Moderation | None = None,
) -> tornado.web.Application:
    socket_args = dict(
        bus=bus,
        settings=settings,
        registry=registry,
        metrics=metrics,
        limits=limits,
        tokens=tokens,
        moderation=moderation,
    )
    # Without tokens the join rate is checked as a handshake is routed (handlers/join_gate.py).
    gate = None if settings.token_mode else JoinGate(RoomSocket, limits.joins, metrics)
    return JoinCheckedApplication(
        [
            tornado.web.url(r"/", tornado.web.RedirectHandler, dict(url="/chat/")),
            tornado.web.url(r"/chat/", LobbyHandler, name="lobby"),
            tornado.web.url(r"/chat/name", UserNameHandler, name="user_name"),
            tornado.web.url(
                r"/chat/([^/]+)/",
                RoomPageHandler,
                dict(max_chars=settings.max_message_chars, token=page_token_settings(settings)),
                name="room",
            ),
            tornado.web.url(r"/ws/chat/([^/]+)/", RoomSocket, socket_args),
            tornado.web.url(r"/healthz", HealthHandler),
            tornado.web.url(r"/readyz", ReadyHandler, dict(bus=bus)),
            tornado.web.url(r"/metrics", MetricsHandler, dict(metrics=metrics)),
        ],
        host_policy(settings.host, settings.allowed_hosts),
        gate,
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        cookie_secret=settings.cookie_secret,
        xsrf_cookies=True,
        # Only the forms read it (never a script); it need not outlive the session.
        xsrf_cookie_kwargs=dict(httponly=True, samesite="Strict"),
        websocket_max_message_size=settings.max_frame_bytes,
        # A client that answers no ping within the timeout is closed, and leaves its rooms.
        websocket_ping_interval=settings.ping_interval,
        websocket_ping_timeout=settings.ping_timeout,
        # --no-access-log: no line per page, static file or health check.
        log_function=_log_request if settings.logs_requests else _no_request_log,
        default_handler_class=NotFoundHandler,
    )


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
        self.app = make_app(settings, self.bus, self.registry, self.metrics, self.limits, self.tokens, self.moderation)
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


class ListenError(RuntimeError):
    """The port cannot be listened on; the message is one line for a person."""


# Errors of bind(): the address, not the server, is the problem.
_LISTEN_ERRORS = {
    errno.EADDRINUSE: "the port is already in use (another server? choose a free one with --port or CHAT_PORT)",
    errno.EACCES: "permission denied (ports under 1024 need privileges; choose another with --port or CHAT_PORT)",
    errno.EADDRNOTAVAIL: "the host is not an address of this machine (check --host or CHAT_HOST)",
}


def page_url(host: str, port: int) -> str:
    """The lobby's URL for a person; a wildcard address is reached through loopback."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/chat/"


def drop_privileges(user: str) -> None:
    """Started as root: become ``user`` (its group, no others) for good; nothing to do otherwise.

    Called once listening and with every module loaded: the port may be a
    privileged one, and the interpreter may live where ``user`` cannot read.
    """
    if not user or os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    log.info("server.privileges_dropped", user=user, uid=entry.pw_uid)


def shown_url(url: str) -> str:
    """A Redis URL as a person may see it: without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def start_line(settings: Settings, port: int, reason: str | None) -> str:
    """The one line a person sees at start: where to go, or that Redis cannot be reached and why."""
    url = page_url(settings.host, port)
    if reason is None:
        return f"Chat is running: open {url} (Ctrl-C stops it)"
    return (
        f"Chat cannot reach Redis at {shown_url(settings.redis_url or '')} ({reason}): it keeps trying, "
        f"and until it can, {url} cannot store messages and /readyz answers 503 (Ctrl-C stops it)"
    )


async def tell_the_person(settings: Settings, server: "ChatServer") -> None:
    """Where to go once the bus is ready; if it is not within the Redis timeout, why not, and later that it is."""
    deadline = time.monotonic() + settings.redis_timeout + 0.5
    while server.bus.unavailable_reason() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # a first connection in progress, bounded by the deadline
    reason = server.bus.unavailable_reason()
    print(start_line(settings, server.port, reason), file=sys.stderr, flush=True)
    if reason is not None:
        _watching.add(asyncio.ensure_future(_say_when_ready(settings, server)))


_watching: set["asyncio.Future[None]"] = set()  # a task needs a reference while it runs


async def _say_when_ready(settings: Settings, server: "ChatServer") -> None:
    while server.bus.unavailable_reason() is not None:
        await asyncio.sleep(0.5)  # a person's terminal, not a protocol: a poll is plenty
    print(start_line(settings, server.port, None), file=sys.stderr, flush=True)


# Python's cycle collector at its defaults (700, 10, 10) runs full collections
# again and again during a burst of joins, each scanning every object of every
# connection each time the heap grows by a quarter. Young collections every
# 10,000 allocations, full ones 100 times rarer than by default, and
# everything made at start-up frozen out of them: no full collection in a
# burst (bench/RESULTS.md, "Measurements formerly in code comments").
# Cycles are still collected, later.
GC_THRESHOLDS = (10_000, 10, 1000)


def tune_gc() -> None:
    """Fewer, cheaper cycle collections once the server is up (see GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, log_writer: NonBlockingLineWriter | None = None) -> None:
    server = ChatServer(settings)
    if log_writer is not None:
        server.metrics.count_dropped_log_lines_with(lambda: log_writer.dropped)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        await server.moderation.close()
        await server.bus.close()  # started before the listen that failed
        where = f"{settings.host}:{settings.port}"
        raise ListenError(f"cannot listen on {where}: {_LISTEN_ERRORS[exc.errno]}") from None
    drop_privileges(settings.run_as)
    tune_gc()
    if sys.stderr.isatty():  # a person started it: say where to go (stdout is the log)
        await tell_the_person(settings, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("server.stopping")
    await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        from ops.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["status"]:
        from ops.status_cli import main as status_main

        return status_main(argv[1:])
    if argv[:1] == ["cluster"]:
        from ops.cluster_cli import main as cluster_main

        return cluster_main(argv[1:])
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    if problems := tornado_problems():  # what handlers/websocket/ uses past Tornado's public API
        print(f"server.py: Tornado {tornado.version} lacks what the WebSocket code uses: {problems}", file=sys.stderr)
        return 2
    # Logging never holds up serving: lines go out from a thread, and are
    # dropped (and counted) when nobody reads stdout.
    writer = stdout_writer(settings.node_id)
    configure_logging(settings.node_id, settings.log_format, cast(TextIO, writer), settings.log_level)
    if settings.cookie_secret_generated:
        log.warning(
            "settings.cookie_secret_generated",
            detail="names reset at restart; set CHAT_COOKIE_SECRET, shared by every process",
        )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if settings.event_loop == "uvloop" else None) as runner:
            runner.run(serve(settings, writer))
    except (ListenError, StoreError) as exc:
        writer.drain(timeout=1.0)
        print(f"server.py: {exc}", file=sys.stderr)
        return 1
    writer.drain(timeout=1.0)  # the last lines, if anyone still reads them
    return 0


if __name__ == "__main__":
    sys.exit(main())
