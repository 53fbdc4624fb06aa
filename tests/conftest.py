"""Fixtures: a real chat server on a free port, over each bus backend.

The server runs in the test's own IOLoop (pytest-tornado) so that tests
connect real WebSocket clients to it; it is stopped after the test.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Awaitable, Callable

import pytest

from config.settings import Settings
from server import ChatServer

# pytest-tornado 0.8.1 calls IOLoop.make_current(), deprecated since Tornado 6.2.
warnings.filterwarnings("ignore", message="make_current is deprecated", category=DeprecationWarning)

SECRET = "test-secret"
BACKENDS = ["memory"]

MakeServer = Callable[..., Awaitable[ChatServer]]


def base_settings(**overrides: Any) -> Settings:
    settings = Settings(
        port=0, node_id="test-node", cookie_secret=SECRET, log_format="json",
        shutdown_timeout=2.0,
    )
    return dataclasses.replace(settings, **overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings that select the backend under test."""
    if backend == "redis":
        return request.getfixturevalue("redis_bus_settings")
    return {}


@pytest.fixture
def make_server(io_loop: Any, bus_settings: dict[str, Any]) -> Any:
    servers: list[ChatServer] = []

    async def make(**overrides: Any) -> ChatServer:
        server = ChatServer(base_settings(**{**bus_settings, **overrides}))
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        io_loop.run_sync(server.stop, timeout=10)
