"""The Tornado application: its URLs, the request log, and the settings the pages and sockets get."""

from __future__ import annotations

from pathlib import Path

import structlog
import tornado.web

from config.settings import Settings
from handlers.health import HealthHandler, ReadyHandler
from handlers.hosts import host_policy
from handlers.join_gate import JoinCheckedApplication, JoinGate
from handlers.pages import LobbyHandler, NotFoundHandler, RoomPageHandler, UserNameHandler
from handlers.room_socket import RoomSocket
from handlers.socket_state import SocketContext
from telemetry.metrics import Metrics, MetricsHandler

ROOT = Path(__file__).resolve().parent.parent  # the repository: templates/ and static/
log = structlog.get_logger("chat.server")


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


def make_app(socket: SocketContext, metrics: Metrics) -> tornado.web.Application:
    """The application; ``metrics`` is ``socket.metrics`` whole (``/metrics`` serves its registry)."""
    settings, bus, limits = socket.settings, socket.bus, socket.limits
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
            tornado.web.url(r"/ws/chat/([^/]+)/", RoomSocket, dict(context=socket)),
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
