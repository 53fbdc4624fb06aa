"""The admin page (``/admin/`` on the API listener) in headless Chromium, and its JSON route's refusals.

The page is given the API key in its form; it then shows the processes, the
busiest rooms, a room's members and last messages (put there by the test
over real WebSockets), and a deliveries chart that moves while the test
sends traffic, with no serious accessibility violation (axe-core). A
refused key shows no data. Everything runs on the
in-process bus (tests/test_status.py covers the Redis bus and its lag).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable, Iterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, expect

from runtime.chat_server import ChatServer
from tests.api_kit import API_KEY, api_settings, call
from tests.browser import TIMEOUT_MS, browser, io_loop  # noqa: F401  (fixtures)
from tests.client import ChatClient
from tests.helpers import fetch
from tests.test_room_page import axe_violations

pytestmark = pytest.mark.parametrize("backend", ["memory"])

LAPTOP: ViewportSize = {"width": 1280, "height": 800}
CHART_TIMEOUT_MS = 15_000  # a poll every 2 s: a few points
# Chromium logs each refused request (a wrong key, a bad room name) itself; the page's own errors are what count.
REFUSAL_LOGGED = re.compile(r"^Failed to load resource: the server responded with a status of 40[01] ")
OpenAdmin = Callable[[ChatServer, str], Awaitable[Page]]


@pytest.fixture
def open_admin(io_loop: Any, browser: Browser, make_server: Any) -> Iterator[OpenAdmin]:  # noqa: F811
    """A fresh browser context on the admin page, the key typed in its form; closed before the server stops."""
    contexts: list[Any] = []
    errors: list[str] = []

    async def open_(server: ChatServer, key: str) -> Page:
        context = await browser.new_context(viewport=LAPTOP)
        contexts.append(context)
        page = await context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not REFUSAL_LOGGED.search(message.text):
                errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        assert server.api is not None
        await page.goto(f"http://127.0.0.1:{server.api.port}/admin/")
        await page.fill("#key", key)
        await page.click("#key-form button[type=submit]")
        return page

    yield open_

    async def close_all() -> None:
        for context in contexts:
            await context.close()

    io_loop.run_sync(close_all, timeout=30)
    assert errors == []


async def chart_values(page: Page, chart: str) -> list[float]:
    raw = await page.get_attribute(f"#{chart}", "data-values")
    return [float(value) for value in (raw or "").split()]


@pytest.mark.gen_test(timeout=90)
async def test_the_page_shows_a_rooms_members_and_messages_and_a_chart_that_moves(
    make_server: Any, open_admin: OpenAdmin
) -> None:
    server = await make_server(**api_settings(status_interval=0.2))
    ann = await ChatClient.connect(server.port, "design", user="Ann")
    bob = await ChatClient.connect(server.port, "design", user="Bob")
    await bob.say("<b>not bold</b> & fine")
    await bob.say("second message")
    await ann.messages(2)

    page = await open_admin(server, API_KEY)
    processes = page.locator("#processes tbody tr")
    await expect(processes).to_have_count(1)
    await expect(processes.locator(".badge")).to_have_text("ready")
    await expect(page.locator("#rooms tbody tr")).to_have_count(1)
    await page.get_by_role("button", name="design").click()
    await expect(page.locator("#members li")).to_have_text(["Ann", "Bob"])
    last = page.locator("#messages li .what")
    await expect(last).to_have_text(["second message", "<b>not bold</b> & fine"])  # newest first, as text
    assert await page.locator("#messages b").count() == 0
    await expect(page.locator("#messages li .who")).to_have_text(["Bob", "Bob"])
    assert await axe_violations(page) == []  # tests/a11y's axe-core: nothing serious or critical

    # Quiet now: the deliveries chart's newest point is zero; under traffic it rises.
    await expect(page.locator("#rate-chart")).to_have_attribute("data-values", re.compile(r"(^| )0$"))
    quiet = len(await chart_values(page, "rate-chart"))
    before_points = await page.get_attribute("#rate-chart polyline", "points")
    stop = asyncio.Event()

    async def talk() -> None:
        n = 0
        while not stop.is_set():
            await bob.say(f"traffic {n}")
            await ann.recv_chat()
            n += 1

    traffic = asyncio.ensure_future(talk())
    try:
        await page.wait_for_function(
            "quiet => document.getElementById('rate-chart').dataset.values.split(' ').slice(quiet).some(v => v > 0)",
            arg=quiet,
            timeout=CHART_TIMEOUT_MS,
        )
    finally:
        stop.set()
        await traffic
    assert max((await chart_values(page, "rate-chart"))[quiet:]) > 0
    assert await page.get_attribute("#rate-chart polyline", "points") != before_points
    await expect(page.locator("#rate-max")).not_to_have_text("max 0.0")
    # A new message reaches the room view at the next poll.
    await ann.say("from ann")
    await expect(last.first).to_have_text("from ann", timeout=TIMEOUT_MS)
    # A name that is no room: the API's refusal is shown, and the room view goes.
    await page.fill("#room-name", "no such/room")
    await page.click("#room-form button[type=submit]")
    await expect(page.locator("#room-error")).to_contain_text("a room name is 1 to 100")
    await expect(page.locator("#room-view")).to_be_hidden()
    ann.close()
    bob.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_refused_key_shows_no_data(make_server: Any, open_admin: OpenAdmin) -> None:
    server = await make_server(**api_settings(status_interval=0.2))
    member = await ChatClient.connect(server.port, "secret_room", user="Ann")
    page = await open_admin(server, "not-the-key")
    await expect(page.locator("#key-error")).to_have_text("That key was refused.")
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await page.locator("#processes tbody tr").count() == 0
    assert await page.locator("#rooms tbody tr").count() == 0
    assert "secret_room" not in await page.content()
    assert await page.evaluate("() => sessionStorage.getItem('chat-admin-key')") is None
    # The right key then opens it; "Forget key" empties it again.
    await page.fill("#key", API_KEY)
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#rooms tbody tr")).to_have_count(1)
    await page.click("#forget")
    await expect(page.locator("#key-form")).to_be_visible()
    assert await page.locator("#rooms tbody tr").count() == 0
    assert await page.evaluate("() => sessionStorage.getItem('chat-admin-key')") is None
    member.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_json_route_needs_the_key_and_checks_its_input(make_server: Any) -> None:
    server = await make_server(**api_settings())
    port = server.api.port
    assert (await call(port, "GET", "/api/cluster", key=None))[0] == 401
    assert (await call(port, "GET", "/api/cluster", key="wrong-key"))[0] == 401
    for bad in ("0", "11", "x", "-1"):
        status, body = await call(port, "GET", f"/api/cluster?rooms={bad}")
        assert (status, body["error"]) == (400, "bad_request"), bad
    status, body = await call(port, "GET", "/api/rooms/not%20a%20room/members")  # the room view's own route
    assert (status, body["error"]) == (400, "bad_room")
    status, body = await call(port, "GET", "/api/cluster?rooms=1")
    assert status == 200 and [p["state"] for p in body["processes"]] == ["ready"]
    # The page shell needs no key and holds no data; only its own files are served beside it.
    page = await fetch(port, "/admin/")
    assert page.code == 200 and b"127.0.0.1" not in page.body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert (await fetch(port, "/admin/static/admin.js")).code == 200
    assert (await fetch(port, "/admin/static/room.js", raise_error=False)).code == 404
    assert (await fetch(server.port, "/admin/", raise_error=False)).code == 404  # not on the pages' port
