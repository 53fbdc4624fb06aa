"""A client_id is remembered for the resend window, then forgotten: on each bus backend, without sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bus.message import Draft
from runtime.chat_server import build_backend
from telemetry.metrics import Metrics
from tests.conftest import base_settings

WINDOW = 0.2  # seconds; short, so the test runs in well under a second
# Past the window, how long forgetting may lag (a poll every 20 ms, on a loaded
# machine); short enough that a window that never ends fails within a second.
LAG = 0.4


@pytest.mark.gen_test(timeout=10)
async def test_a_client_id_is_remembered_for_the_resend_window_then_forgotten(bus_settings: dict[str, Any]) -> None:
    backend = build_backend(base_settings(**bus_settings, resend_window=WINDOW, node_id="resend"), Metrics())
    await backend.start(lambda messages: None)
    try:
        started = time.monotonic()
        first = await backend.publish(Draft("r", "ann", "hi", "c-1"))
        again = await backend.publish(Draft("r", "ann", "hi", "c-1"))
        assert not first.duplicate and again.duplicate and again.message == first.message
        other_user = await backend.publish(Draft("r", "bob", "hi", "c-1"))
        other_room = await backend.publish(Draft("s", "ann", "hi", "c-1"))
        assert not other_user.duplicate and not other_room.duplicate

        while (later := await backend.publish(Draft("r", "ann", "hi", "c-1"))).duplicate:
            assert time.monotonic() - started < WINDOW + LAG, "the client_id was not forgotten after the window"
            await asyncio.sleep(0.02)  # polling, bounded by the deadline above
        assert time.monotonic() - started >= WINDOW - 0.01  # not forgotten early either
        assert later.message.id != first.message.id
        history = await backend.history("r", None, 10)
        assert [m.id for m in history.messages] == [first.message.id, other_user.message.id, later.message.id]
    finally:
        await backend.close()
