"""Look-alike names and rooms end to end: the audit's strings through the lobby, the room page and the socket."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.client import ChatClient
from tests.helpers import WEBSOCKET_KEY, fetch

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": WEBSOCKET_KEY,
}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("room", ["lobby\u3164", "lobby\u115f", "lоbby", "ｌｏｂｂｙ"])
async def test_a_room_that_looks_like_lobby_is_a_404_that_links_lobby(make_server: Any, room: str) -> None:
    server = await make_server()
    page = await fetch(server.port, f"/chat/{quote(room)}/")
    assert page.code == 404
    body = page.body.decode()
    assert "looks like the room “lobby”" in body and 'href="/chat/lobby/"' in body
    socket = await fetch(server.port, f"/ws/chat/{quote(room)}/", headers=UPGRADE)
    assert socket.code == 404


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("fake", ["admin\ufe00", "admin\u180b", "admin\u180f", "admin\U000e0100"])
async def test_an_invisible_tail_does_not_make_a_second_admin(make_server: Any, fake: str) -> None:
    server = await make_server()
    real = await ChatClient.connect(server.port, "names", user="admin")
    other = await ChatClient.connect(server.port, "names", user=fake)
    assert other.ready is not None and other.ready["user"] == "admin"  # the same name: one member
    members = [m["user"] for m in (await real.recv_type("presence"))["members"]]
    assert members == ["admin"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("fake", ["аԁmin", "admın", "ɑdmin", "ᴀdmin", "ᎪDMIN"])
async def test_names_that_pass_for_admin_are_shown_tagged(make_server: Any, fake: str) -> None:
    server = await make_server()
    real = await ChatClient.connect(server.port, "names", user="admin")
    other = await ChatClient.connect(server.port, "names", user=fake)
    assert other.ready is not None and other.ready["user"].startswith(fake + "#")
    await other.say("hi")
    assert (await real.messages(1))[0]["user"] == other.ready["user"]
