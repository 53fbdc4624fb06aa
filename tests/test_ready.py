"""Section 1: ``/readyz`` follows the bus (503 with the reason while it cannot publish).

On the in-process bus the one state that cannot publish is a closed bus; a
backend that refuses publishes (as Redis down does) is shown with a thin
wrapper over the memory backend. Both run on the memory backend only;
Redis-down itself is covered by the Redis bus tests, which stop a real redis-server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

import server as server_module
from bus.backend import BusUnavailable
from bus.memory import MemoryBackend
from bus.message import Draft, Published
from config.settings import Settings
from tests.client import ChatClient
from tests.test_metrics import scrape, value


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/readyz", raise_error=False,
                                             request_timeout=5)
    return response.code, json.loads(response.body)


class SwitchableBackend(MemoryBackend):
    """The memory backend with a switch: while ``down`` is set, publishing fails as on a dead Redis."""

    down: str | None = None

    async def publish(self, draft: Draft) -> Published:
        if self.down is not None:
            raise BusUnavailable(self.down)
        return await super().publish(draft)

    def unavailable_reason(self) -> str | None:
        return self.down or super().unavailable_reason()


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("backend", ["memory"])
async def test_readyz_is_503_with_the_reason_while_the_memory_bus_is_closed(make_server: Any) -> None:
    server = await make_server()
    assert await readyz(server.port) == (200, {"status": "ready"})
    await server.bus.close()
    assert await readyz(server.port) == (503, {"status": "unavailable", "reason": "bus closed"})
    await server.bus.start()
    assert await readyz(server.port) == (200, {"status": "ready"})


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("backend", ["memory"])  # the wrapper is over the memory backend
async def test_readyz_follows_a_backend_that_cannot_publish_and_recovers(
    make_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    backends: list[SwitchableBackend] = []

    def build(settings: Settings, _metrics: object) -> SwitchableBackend:
        backends.append(SwitchableBackend(settings.retention, settings.resend_window))
        return backends[-1]

    monkeypatch.setattr(server_module, "build_backend", build)
    server = await make_server()
    client = await ChatClient.connect(server.port, "r")
    backends[0].down = "redis unreachable: connection refused"
    assert await readyz(server.port) == (503, {"status": "unavailable",
                                               "reason": "redis unreachable: connection refused"})
    await client.say("lost?")
    assert (await client.recv_type("error"))["error"] == "unavailable"
    assert value(await scrape(server.port), "chat_messages_rejected_total", reason="unavailable") == 1
    backends[0].down = None
    assert await readyz(server.port) == (200, {"status": "ready"})
    await client.say("stored")
    assert [m["message"] for m in await client.messages(1)] == ["stored"]
