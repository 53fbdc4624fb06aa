"""Token mode's room page in headless Chromium: its token renewed before it expires, and the page's
recovery when the host site stops giving tokens for a while (closed 4001, then resumed with ``since``).

The host site is a handler added to the test's own server (the same origin,
as behind one proxy): it knows its user by a cookie of its own and answers
``{"token": ...}`` with a token that lives 10 s, or 503 while told to fail.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import expect
from structlog.testing import capture_logs
from tornado.web import RequestHandler

from runtime.chat_server import ChatServer
from tests.browser import OpenUser, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.client import ChatClient
from tests.test_room_page import axe_violations
from tests.tokens import TOKEN_SECRET, hs256, token_cookie

pytestmark = pytest.mark.parametrize("backend", ["memory"])

TOKEN_SECONDS = 10
WS_CLOSED = re.compile(r"WebSocket|Failed to load resource")


class Site:
    """The host site's state: whether its token URL works, and how many tokens it gave."""

    def __init__(self) -> None:
        self.failing = False
        self.issued = 0


class TokenHandler(RequestHandler):
    def initialize(self, site: Site) -> None:
        self.site = site

    def get(self) -> None:
        user = self.get_cookie("site_user")
        if self.site.failing or not user:
            self.set_status(503 if user else 401)
            self.finish({"error": "no token now"})
            return
        self.site.issued += 1
        self.set_header("Cache-Control", "no-store")
        self.finish({"token": hs256(user, name=user.title(), ttl=TOKEN_SECONDS)})


async def site_server(make_server: Any, **settings: Any) -> tuple[ChatServer, Site]:
    server: ChatServer = await make_server(
        token_secret=TOKEN_SECRET, token_refresh_url="/site/token", rate_limit=0, **settings
    )
    site = Site()
    server.app.add_handlers(r".*", [(r"/site/token", TokenHandler, {"site": site})])
    return server, site


@pytest.mark.gen_test(timeout=120)
async def test_the_page_renews_its_token_and_recovers_after_4001_with_no_gap_and_no_duplicate(
    make_server: Any, open_user: OpenUser
) -> None:
    server, site = await site_server(make_server)
    ann = await open_user(server, "Ann")
    await ann.context.add_cookies([{"name": "site_user", "value": "ann", "url": ann.base}])
    await ann.page.goto(f"{ann.base}/chat/talk/")
    await ann.wait_connected()
    await expect(ann.page.locator("#user-name")).to_have_text("Ann")
    bob = await ChatClient.connect(server.port, "talk", headers=token_cookie(hs256("bob", name="Bob", ttl=600)))
    expected: list[tuple[str, str]] = []

    async def bob_says(text: str) -> None:
        await bob.say(text)
        expected.append(("Bob", text))

    # 1. Past two of its tokens' lifetimes the page stays on its one socket: it renewed the token itself.
    for k in range(int(TOKEN_SECONDS * 1.6)):
        await bob_says(f"bob {k}")
        await expect_log(ann.page, expected)
        await asyncio.sleep(1)  # the pace of a conversation, not synchronisation
    assert len(ann.sockets) == 1 and site.issued >= 2
    await ann.say("ann renewed", stored=True)
    expected.append(("Ann", "ann renewed"))

    # 2. The site stops giving tokens: the token runs out, the server closes 4001, the page keeps trying.
    site.failing = True
    with capture_logs() as logs:
        await expect(ann.status).not_to_have_attribute("data-state", "open", timeout=(TOKEN_SECONDS + 5) * 1000)
    closes = [(e["code"], e["reason"]) for e in logs if e["event"] == "ws.auth_refused"]
    assert closes == [(4001, "token expired")]
    for k in range(3):
        await bob_says(f"while ann is out {k}")
    await ann.say("typed while out")  # kept, and sent once the page is back

    # 3. The site works again: the page gets a token, resumes with since: nothing missed, nothing twice.
    site.failing = False
    await ann.wait_connected(timeout=25_000)
    await expect(
        ann.page.locator("#chat-log li.message.own:not(.pending)").filter(has_text="typed while out")
    ).to_have_count(1)
    expected.append(("Ann", "typed while out"))
    await bob_says("welcome back")
    await expect_log(ann.page, expected)
    assert len(ann.sockets) >= 2 and all("token" not in url for url in ann.sockets)
    assert ann.unexpected_errors(WS_CLOSED) == []


@pytest.mark.gen_test(timeout=60)
async def test_a_private_room_not_granted_says_so_and_stops_retrying(make_server: Any, open_user: OpenUser) -> None:
    server, _ = await site_server(make_server, private_rooms=("staff",))
    eve = await open_user(server, "Eve")
    await eve.context.add_cookies([{"name": "site_user", "value": "eve", "url": eve.base}])
    await eve.page.goto(f"{eve.base}/chat/staff/")
    await expect(eve.status).to_have_attribute("data-state", "denied")
    await expect(eve.page.locator("#chat-log")).to_contain_text("You are not allowed in this room.")
    assert len(eve.sockets) == 1
    assert await axe_violations(eve.page) == []  # the refused page, its composer disabled, still reads well
