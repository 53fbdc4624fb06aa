"""Helpers of the server API's tests: a key, one request, a server with the API on."""

from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

API_KEY = "test-api-key-0123456789abcdef0123456789"
OTHER_KEY = "test-api-key-rotated-fedcba9876543210fedc"
TIMEOUT = 10.0


def api_settings(**extra: Any) -> dict[str, Any]:
    return {"api_port": 0, "api_keys": (API_KEY, OTHER_KEY), "rate_limit": 0, **extra}


async def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One API request: (status, decoded JSON body or None)."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is None and method in ("POST", "PUT"):
        data = b""
    request = HTTPRequest(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        body=data,
        headers=all_headers,
        request_timeout=TIMEOUT,
        allow_nonstandard_methods=True,
    )
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    payload = json.loads(response.body) if response.body else None
    return response.code, payload
