"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright.

The browser itself (Debian's Chromium, kept off the closed network) is
launched by tests/helpers.py.

The fixtures below are shared by the browser test modules (tests/test_browser.py,
tests/test_room_page.py), which import them by name. The server runs
in-process (conftest's ``make_server``) and Playwright's *async* API runs in
the same event loop, inside pytest-tornado's ``gen_test``: Playwright objects
belong to the loop they were made in, so ``io_loop`` is module-scoped here and
one browser serves a whole module (each test still gets its own server and its
own browser contexts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import quote

import pytest
import tornado.ioloop
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from runtime.chat_server import ChatServer
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, chromium, launch_chromium  # noqa: F401 (re-exported)

TIMEOUT_MS = 5_000
DESKTOP: ViewportSize = {"width": 1000, "height": 700}
expect.set_options(timeout=TIMEOUT_MS)

Message = tuple[str, str]  # (author, text) as the page shows them


# ---- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def io_loop() -> Iterator[tornado.ioloop.IOLoop]:
    """One loop for the module, so that the module's browser can be used by every test."""
    loop = tornado.ioloop.IOLoop()
    loop.make_current()
    yield loop
    loop.clear_current()
    loop.close(all_fds=True)


@pytest.fixture(scope="module")
def browser(io_loop: tornado.ioloop.IOLoop) -> Iterator[Browser]:
    async def launch() -> tuple[Any, Browser]:
        playwright = await async_playwright().start()
        try:
            launched = await launch_chromium(playwright)
        except BaseException:
            await playwright.stop()
            raise
        return playwright, launched

    playwright, launched = io_loop.run_sync(launch, timeout=60)

    async def shut_down() -> None:
        try:
            await launched.close()
        finally:
            await playwright.stop()

    yield launched
    io_loop.run_sync(shut_down, timeout=30)


@dataclass
class User:
    """One visitor: a browser context (its own cookies) with one page."""

    name: str
    base: str
    context: BrowserContext
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions, console errors
    sockets: list[str] = field(default_factory=list)  # URL of every WebSocket the page opened

    @property
    def status(self) -> Locator:
        return self.page.locator("#connection-status")

    async def choose_name(self) -> None:
        """Through the lobby's name form, as a person would."""
        await self.page.goto(f"{self.base}/chat/")
        await self.page.fill("#user-name-input", self.name)
        async with self.page.expect_navigation():
            await self.page.click("#user-name-submit")
        # The lobby after the redirect shows the name from the new cookie.
        await expect(self.page.locator("#user-name-input")).to_have_value(self.name)

    async def enter_room(self, room: str) -> None:
        await self.page.goto(f"{self.base}/chat/{quote(room)}/")
        await self.wait_connected()
        await expect(self.page.locator("#user-name")).to_have_text(self.name)

    async def wait_connected(self, timeout: float = TIMEOUT_MS) -> None:
        await expect(self.status).to_have_attribute("data-state", "open", timeout=timeout)
        await expect(self.status).to_have_text("connected")

    async def say(self, text: str, *, enter: bool = False, stored: bool = False) -> None:
        """Send ``text``; with ``stored``, return once the server has it (no longer pending here).

        Messages of two people sent close together are ordered by the server as
        they arrive: a test that expects one order waits for each to be stored.
        """
        box = self.page.locator("#chat-message-input")
        await box.fill(text)
        if enter:
            await box.press("Enter")
        else:
            await self.page.click("#chat-message-submit")
        await expect(box).to_have_value("")
        if stored:
            mine = self.page.locator("#chat-log li.message.own:not(.pending)").filter(has_text=text)
            await expect(mine).not_to_have_count(0, timeout=TIMEOUT_MS)

    async def record_states(self) -> None:
        """Keep every value #connection-status takes, for states too short to poll."""
        await self.page.evaluate("""() => {
            const el = document.getElementById("connection-status");
            window.__states = [];
            new MutationObserver(() => window.__states.push(el.dataset.state))
                .observe(el, {attributes: true, attributeFilter: ["data-state"]});
        }""")

    def unexpected_errors(self, allowed: re.Pattern[str] | None = None) -> list[str]:
        return [e for e in self.errors if allowed is None or not allowed.search(e)]


OpenUser = Callable[..., Awaitable[User]]


@pytest.fixture
def open_user(io_loop: tornado.ioloop.IOLoop, browser: Browser, make_server: Any) -> Iterator[OpenUser]:
    """A new user (fresh browser context) named through the lobby; closed after the test.

    It depends on ``make_server`` so that it is torn down first: the pages
    close before their server stops.
    """
    contexts: list[BrowserContext] = []

    async def open_(server: ChatServer, name: str, viewport: ViewportSize = DESKTOP) -> User:
        context = await browser.new_context(viewport=viewport)
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        user = User(name, f"http://127.0.0.1:{server.port}", context, page)

        async def on_dialog(dialog: Dialog) -> None:
            user.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                user.errors.append(message.text)

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda error: user.errors.append(f"uncaught: {error}"))
        page.on("websocket", lambda ws: user.sockets.append(ws.url))
        await user.choose_name()
        return user

    yield open_

    async def close_all() -> None:
        for context in contexts:
            await context.close()

    io_loop.run_sync(close_all, timeout=30)


# ---- helpers ----------------------------------------------------------------


async def expect_log(page: Page, expected: list[Message], timeout: float = TIMEOUT_MS) -> None:
    """#chat-log shows exactly these messages, in this order, once each."""
    items = page.locator("#chat-log li.message")
    await expect(items.locator(".author")).to_have_text([author for author, _ in expected], timeout=timeout)
    await expect(items.locator(".text")).to_have_text([text for _, text in expected])
    ids = await items.evaluate_all("items => items.map(li => li.dataset.id)")
    assert len(set(ids)) == len(ids) == len(expected), ids
