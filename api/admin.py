"""The admin page (``/admin/``) and its data (``/api/cluster``), on the API's listener.

The page itself is a shell with no data in it, served without a key; every
number it shows comes from JSON routes that need the API key, which the
browser sends as ``Authorization: Bearer`` (the page keeps it in
sessionStorage: never in a URL, a cookie or a log). Its room view reuses
the API's own members and messages routes. Scripts and styles are files of
their own under a strict Content-Security-Policy, and user text is only ever
set as text (static/admin.js).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado.web import RequestHandler, StaticFileHandler

from api import inputs
from api.base import ApiError, ApiHandler
from api.rooms import unavailable
from bus.backend import BusUnavailable

ROOT = Path(__file__).resolve().parent.parent
STATIC_FILES = ("admin.js", "admin.css", "favicon.svg")
TOP_DEFAULT, TOP_MAX = 10, 10
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _guard(handler: RequestHandler) -> None:
    handler.set_header("Content-Security-Policy", POLICY)
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")


class ClusterHandler(ApiHandler):
    """Every process with its readiness and lag, and the busiest rooms (telemetry/status.py says how they are read)."""

    route = "/api/cluster"

    async def get(self) -> None:
        self.no_body()
        top = inputs.count(self.get_query_argument("rooms", None), "rooms", TOP_DEFAULT, TOP_MAX)
        status = self.context.status
        if status is None:
            raise ApiError(404, "not_found", "this server keeps no status")
        try:
            body = await status.cluster(top)
        except BusUnavailable as exc:
            raise unavailable(exc) from None
        self.reply(200, body)


class AdminPageHandler(RequestHandler):
    def initialize(self, version: str) -> None:
        self.version = version

    def set_default_headers(self) -> None:
        _guard(self)
        self.set_header("Cache-Control", "no-store")

    def get(self) -> None:
        self.render("admin.html", version=self.version)


class AdminStaticHandler(StaticFileHandler):
    """The page's script, style and icon; nothing else of static/ is served here."""

    def set_default_headers(self) -> None:
        _guard(self)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if Path(absolute_path).name not in STATIC_FILES:
            raise ApiError(404, "not_found", "no such file")
        return super().validate_absolute_path(root, absolute_path)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(f"{status_code}\n")


def admin_rules() -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The page's routes; the script's version (its modification time) keeps a stale copy out of caches."""
    version = str(int(max((ROOT / "static" / name).stat().st_mtime for name in STATIC_FILES)))
    return [
        (r"/admin/$", AdminPageHandler, dict(version=version)),
        (r"/admin/static/([a-z]+\.[a-z]+)$", AdminStaticHandler, dict(path=str(ROOT / "static"))),
    ]
