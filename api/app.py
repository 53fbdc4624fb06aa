"""The API's Tornado application and its listener (``--api-port``, ``--api-host``), apart from the pages' port.

Routes are listed once, by their OpenAPI path; the Tornado patterns are made
from it, so the document and the routing table name the same paths.
"""

from __future__ import annotations

import re
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from api import admin, moderation, rooms
from api.base import CUT_OFF_BYTES, ApiContext, ApiHandler, ApiNotFound
from api.openapi import OpenApiHandler
from handlers.hosts import HostCheckedApplication, host_policy

ROUTES: list[tuple[str, type[ApiHandler]]] = [
    (handler.route, handler)
    for handler in (
        rooms.MessagesHandler,
        rooms.MessageHandler,
        rooms.MembersHandler,
        rooms.RoomsHandler,
        moderation.DisconnectHandler,
        moderation.RoomBansHandler,
        moderation.RoomBanHandler,
        moderation.BansHandler,
        moderation.BanHandler,
        moderation.MutesHandler,
        moderation.MuteHandler,
        admin.ClusterHandler,
        OpenApiHandler,
    )
]


def pattern(path: str) -> str:
    """The Tornado pattern of an OpenAPI path: each ``{name}`` one path segment."""
    return re.sub(r"\{[^}]+\}", "([^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}")) + "$"


def make_api_app(context: ApiContext, host: str, allowed_hosts: tuple[str, ...]) -> tornado.web.Application:
    rules: list[Any] = [tornado.web.url(pattern(path), handler, dict(context=context)) for path, handler in ROUTES]
    rules += admin.admin_rules()  # the admin page: HTML and its files, its data from the routes above
    return HostCheckedApplication(
        rules,
        host_policy(host, allowed_hosts),
        template_path=str(admin.ROOT / "templates"),
        default_handler_class=ApiNotFound,
        default_handler_args=dict(context=context),
        log_function=lambda handler: None,  # every handler logs api.request itself
    )


def listen_on(http: tornado.httpserver.HTTPServer, host: str, port: int, backlog: int = 128) -> int:
    """Bind ``host``:``port`` (0: any free port), serve ``http`` there; the port bound.

    ``backlog``: 128 is Tornado's own default.
    """
    sockets = tornado.netutil.bind_sockets(port, host, backlog=backlog)
    http.add_sockets(sockets)
    return int(sockets[0].getsockname()[1])


class ApiServer:
    """The listener of the API application; ``port`` is the bound one after ``listen``."""

    def __init__(self, app: tornado.web.Application, host: str, port: int, header_timeout: float) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._header_timeout = header_timeout
        self.http: tornado.httpserver.HTTPServer | None = None

    def listen(self) -> None:
        self.http = tornado.httpserver.HTTPServer(
            self.app,
            max_body_size=CUT_OFF_BYTES,
            idle_connection_timeout=self._header_timeout,
            body_timeout=self._header_timeout,
        )
        self.port = listen_on(self.http, self.host, self.port)

    async def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
            await self.http.close_all_connections()
