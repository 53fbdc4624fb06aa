"""handlers/websocket/guard.py: a Tornado that changed what the package uses is caught; the server will not start.

Each test plants one such change in this process's Tornado (undone at the
end) and checks that the guard names it; none compares Tornado's source text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado
import tornado.util
from tornado.tcpserver import TCPServer
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

import server
from handlers.websocket.guard import RELIED_ON, tornado_problems


def test_this_tornado_offers_everything_the_package_relies_on() -> None:
    assert tornado_problems() == [], (
        f"Tornado {tornado.version} changed what handlers/websocket/ relies on:\n" + "\n".join(RELIED_ON)
    )


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WebSocketProtocol13, "_handle_message", lambda self, opcode, data, extra: None)
    assert any("WebSocketProtocol13._handle_message takes" in problem for problem in tornado_problems())


def test_a_pong_no_longer_noted_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WebSocketProtocol13, "_handle_message", lambda self, opcode, data: None)
    assert tornado_problems() == ["WebSocketProtocol13 no longer notes a pong in _received_pong"]


def test_a_renamed_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    tcp_init = TCPServer.__init__

    def renamed(self: TCPServer, *args: Any, **kwargs: Any) -> None:
        tcp_init(self, *args, **kwargs)
        self.__dict__["listening"] = self.__dict__.pop("_sockets")

    monkeypatch.setattr(TCPServer, "__init__", renamed)
    assert tornado_problems() == ["TCPServer._sockets is no dict"]


def test_a_class_attribute_a_slot_would_hide_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WebSocketHandler, "close_code", None, raising=False)
    assert any("a slot would hide them" in problem for problem in tornado_problems())


def test_a_mask_function_that_no_longer_unmasks_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tornado.util, "_websocket_mask", lambda mask, data: data)
    assert tornado_problems() == ["tornado.util._websocket_mask(mask, data) no longer unmasks"]


def test_the_server_refuses_to_start_on_such_a_tornado(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(WebSocketProtocol13, "_abort", lambda self, now: None)
    assert server.main(["--port", "0"]) == 2
    assert "lacks what the WebSocket code uses" in capsys.readouterr().err


def test_the_guard_runs_where_no_event_loop_is_current() -> None:
    """As after an earlier test closed its loop, or at start-up: the objects it builds make Futures."""
    asyncio.set_event_loop(None)
    assert tornado_problems() == []
