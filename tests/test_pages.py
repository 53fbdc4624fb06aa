"""Pages, room names, the name cookie, health."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPResponse

from tests.client import ChatClient, user_cookie
from tests.conftest import SECRET
from tests.helpers import WEBSOCKET_KEY, fetch

BAD_ROOMS = ["a b", "a.b", "x" * 101, "a/b", "", "a-b"]


@pytest.mark.gen_test(timeout=20)
async def test_root_redirects_to_the_lobby(make_server: Any) -> None:
    server = await make_server()
    response = await fetch(server.port, "/")
    assert response.code in (301, 302)
    assert response.headers["Location"] == "/chat/"


@pytest.mark.gen_test(timeout=20)
async def test_lobby_carries_the_contract_ids(make_server: Any) -> None:
    server = await make_server()
    body = (await fetch(server.port, "/chat/")).body.decode()
    for element in ("room-name-input", "room-name-submit", "user-name-input", "user-name-submit"):
        assert f'id="{element}"' in body


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("room", ["lobby", "café", "日本語", "x" * 100, "_9"])
async def test_room_page_carries_the_contract_ids(make_server: Any, room: str) -> None:
    server = await make_server()
    response = await fetch(server.port, f"/chat/{quote(room)}/")
    assert response.code == 200
    body = response.body.decode()
    for element in (
        "chat-log",
        "chat-message-input",
        "chat-message-submit",
        "connection-status",
        "member-list",
        "typing-status",
    ):
        assert f'id="{element}"' in body


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("room", [r for r in BAD_ROOMS if r])
async def test_bad_room_name_is_404_for_page_and_socket(make_server: Any, room: str) -> None:
    server = await make_server()
    assert (await fetch(server.port, f"/chat/{quote(room, safe='')}/")).code == 404
    ws = await fetch(
        server.port,
        f"/ws/chat/{quote(room, safe='')}/",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": WEBSOCKET_KEY,
        },
    )
    assert ws.code == 404


@pytest.mark.gen_test(timeout=20)
async def test_room_name_in_page_is_never_markup(make_server: Any) -> None:
    server = await make_server()
    body = (await fetch(server.port, "/chat/abc/")).body.decode()
    assert '<script id="room-name" type="application/json">"abc"</script>' in body


def _xsrf(response: HTTPResponse) -> tuple[str, str]:
    found = re.search(r'name="_xsrf" value="([^"]+)"', response.body.decode())
    assert found is not None, "the page carries no XSRF token"
    token = found.group(1)
    cookies = "; ".join(c.split(";")[0] for c in response.headers.get_list("Set-Cookie"))
    return token, cookies


@pytest.mark.gen_test(timeout=20)
async def test_choosing_a_name_sets_the_signed_cookie_used_by_the_socket(make_server: Any) -> None:
    server = await make_server()
    token, cookies = _xsrf(await fetch(server.port, "/chat/"))
    response = await fetch(
        server.port,
        "/chat/name",
        method="POST",
        headers={"Cookie": cookies},
        body=f"_xsrf={quote(token)}&name={quote('Zoë <b>')}",
    )
    assert response.code == 302
    set_cookie = [c for c in response.headers.get_list("Set-Cookie") if c.startswith("chat_user=")]
    assert set_cookie and "httponly" in set_cookie[0].lower()
    lobby = await fetch(server.port, "/chat/", headers={"Cookie": set_cookie[0].split(";")[0]})
    assert 'value="Zoë &lt;b&gt;"' in lobby.body.decode()
    client = await ChatClient.connect(server.port, "room", headers={"Cookie": set_cookie[0].split(";")[0]})
    assert client.ready is not None and client.ready["user"] == "Zoë <b>"


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("bad", ["", "   ", "x" * 33, "tab\there"])
async def test_a_refused_name_keeps_the_previous_one(make_server: Any, bad: str) -> None:
    server = await make_server()
    token, cookies = _xsrf(await fetch(server.port, "/chat/", headers={"Cookie": user_cookie(SECRET, "Ann")}))
    cookies += "; " + user_cookie(SECRET, "Ann")
    response = await fetch(
        server.port,
        "/chat/name",
        method="POST",
        headers={"Cookie": cookies},
        body=f"_xsrf={quote(token)}&name={quote(bad)}",
    )
    assert response.code == 400
    assert not [c for c in response.headers.get_list("Set-Cookie") if c.startswith("chat_user=")]
    assert 'value="Ann"' in response.body.decode()


@pytest.mark.gen_test(timeout=20)
async def test_name_form_without_xsrf_token_is_refused(make_server: Any) -> None:
    server = await make_server()
    response = await fetch(server.port, "/chat/name", method="POST", body="name=Mallory")
    assert response.code == 403


@pytest.mark.gen_test(timeout=20)
async def test_a_forged_cookie_makes_a_guest(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "room", headers={"Cookie": user_cookie("wrong", "Admin")})
    assert client.ready is not None and re.fullmatch(r"guest-[0-9a-f]{6}", client.ready["user"])


@pytest.mark.gen_test(timeout=20)
async def test_health_and_readiness(make_server: Any) -> None:
    server = await make_server()
    health = await fetch(server.port, "/healthz")
    assert health.code == 200 and health.body == b'{"status": "ok"}'
    assert (await fetch(server.port, "/readyz")).code == 200


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("path", ["/chat/", "/chat/lobby/", "/chat/a%20b/"])
async def test_pages_carry_the_security_headers(make_server: Any, path: str) -> None:
    """No inline script, no sniffing a JSON body into HTML, no room name leaking in a Referer."""
    server = await make_server()
    headers = (await fetch(server.port, path)).headers
    policy = {part.split()[0]: part.split()[1:] for part in headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy.get("script-src", ["'self'"]) == ["'self'"]
    assert "'self'" in policy["connect-src"] and set(policy["connect-src"]) <= {"'self'", "ws:", "wss:"}
    assert not any("'unsafe-inline'" in sources or "*" in sources for sources in policy.values())
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
