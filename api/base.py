"""What every API route shares: the key, the body (at most 1 MiB), JSON in and out, errors, the log line and the count.

Errors are ``{"error": "<code>", "detail": "<text>"}`` with a 4xx or 5xx
status, and every check that can refuse a request runs before it changes
anything. The body is read as it arrives and kept only up to the limit, so
an oversized one costs its sender, not the server, and still gets its 413.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import orjson
import structlog
from tornado.httputil import responses
from tornado.web import HTTPError, RequestHandler, stream_request_body

from api.keys import ApiKeys
from bus.moderation import Moderation
from bus.room_bus import RoomBus
from config.settings import Settings

log = structlog.get_logger("chat.api")

MAX_BODY_BYTES = 1024 * 1024
# Bodies between the limit and this are read (and dropped) so the sender gets
# its 413; past this the connection is cut (Tornado's own limit).
CUT_OFF_BYTES = 8 * MAX_BODY_BYTES


class ApiMetrics(Protocol):
    def api_request(self, route: str, status: int) -> None: ...

    def message_published(self) -> None: ...


class ClusterStatus(Protocol):
    async def cluster(self, top: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ApiContext:
    """What the routes work with, given to each handler through ``initialize``."""

    bus: RoomBus
    moderation: Moderation
    settings: Settings
    keys: ApiKeys
    metrics: ApiMetrics
    status: ClusterStatus | None = None  # the processes and busiest rooms (telemetry/status.py)


class ApiError(HTTPError):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.detail = detail


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request"}


def _refused_first(method: Callable[..., Any]) -> Callable[..., Any]:
    """A route's method that answers the refusal ``prepare`` kept, once the body is read, instead of running."""

    @functools.wraps(method)
    def checked(self: "ApiHandler", *args: Any) -> Any:
        if self._refusal is not None:
            raise self._refusal
        return method(self, *args)

    return checked


@stream_request_body
class ApiHandler(RequestHandler):
    """The base of every route. A refusal known from the headers (401, 429) is answered at once when
    no body follows; with a body, once it is read (and dropped): answered earlier, the connection
    would have to close under a client still sending, which would then see a reset, not the answer.
    """

    route = "other"  # the route's OpenAPI path: the log's and the metric's label
    needs_key = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get", "post", "put", "patch", "delete"):
            if name in cls.__dict__:
                setattr(cls, name, _refused_first(cls.__dict__[name]))

    def initialize(self, context: ApiContext) -> None:
        self.context = context
        self.key_id: str | None = None
        self._body = bytearray()
        self._too_large = False
        self._refusal: ApiError | None = None
        self._started = time.perf_counter()

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        self.request.connection.set_max_body_size(CUT_OFF_BYTES)  # type: ignore[union-attr]
        refusal = self._check_key() if self.needs_key else None
        headers = self.request.headers
        length = headers.get("Content-Length", "0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self._too_large = True
        if refusal is not None:
            if length != "0" or "chunked" in headers.get("Transfer-Encoding", "").lower():
                self._refusal = refusal  # answered once the body is in (see the class)
                return
            raise refusal

    def _check_key(self) -> ApiError | None:
        self.key_id = self.context.keys.identify(self.request.headers.get("Authorization"))
        if self.key_id is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="chat-api"')
            return ApiError(401, "unauthorized", "send a valid API key: Authorization: Bearer <key>")
        if not self.context.keys.take(self.key_id):
            self.set_header("Retry-After", "1")
            return ApiError(429, "rate_limited", "too many requests for this key, slow down")
        return None

    def data_received(self, chunk: bytes) -> None:
        if self._refusal is not None:
            return  # dropped: the answer is a refusal whatever it holds
        if self._too_large or len(self._body) + len(chunk) > MAX_BODY_BYTES:
            self._too_large = True
            self._body.clear()
            return
        self._body += chunk

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object; 413, or 400 for anything else."""
        if self._too_large:
            raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            body = orjson.loads(bytes(self._body) or b"null")
        except orjson.JSONDecodeError:
            raise ApiError(400, "bad_json", "the body is not valid JSON (UTF-8)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        return body

    def no_body(self) -> None:
        """Routes that take no body still refuse one over the limit (it was read for nothing)."""
        if self._too_large:
            raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")

    def reply(self, status: int, body: dict[str, Any] | bytes) -> None:
        self.set_status(status)
        self.finish(body if isinstance(body, bytes) else orjson.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            code, detail = error.code, error.detail
        elif status_code >= 500:
            code, detail = "internal", "the server failed to answer this request"
        else:
            reason = getattr(error, "reason", None) or responses.get(status_code, "Unknown")  # as send_error sets it
            code, detail = _STATUS_CODES.get(status_code, "bad_request"), reason
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": code, "detail": detail}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, HTTPError):
            return  # a refusal: the api.request line says it
        log.error("api.failed", route=self.route, exc_info=(typ, value, tb))

    def on_finish(self) -> None:
        status = self.get_status()
        self.context.metrics.api_request(self.route, status)
        log.info(
            "api.request",
            method=self.request.method,
            route=self.route,
            path=self.request.path,
            status=status,
            key=self.key_id,
            duration_ms=round((time.perf_counter() - self._started) * 1000, 2),
            client=self.request.remote_ip,
        )


class ApiNotFound(ApiHandler):
    """Any path the API does not have: 404 in the API's own shape (no key needed to learn that)."""

    needs_key = False

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, "not_found", "no such API route; see /api/openapi.json")
