"""The room page as people use it all day, in headless Chromium.

Where the newest message is (on join, as messages arrive, on a phone), the
"new messages" marker for a reader who scrolled up, own messages, the
composer, the reconnect countdown with "retry now", the page told when its
name changed, the styled 404, and an accessibility check with axe-core
(tests/a11y, installed by ``make test``).

None of this depends on the bus: every test runs once, on the in-process one.
The fixtures (one Chromium per module, in the test's loop) are in
tests/browser.py. Synchronisation is Playwright's ``expect``/``wait_for_*``
with timeouts, and the test client's timed reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Page, ViewportSize, expect
from tornado.httpclient import AsyncHTTPClient

from runtime.chat_server import ChatServer
from tests.browser import OpenUser, User, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.client import ChatClient

pytestmark = pytest.mark.parametrize("backend", ["memory"])

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
RECONNECT_TIMEOUT_MS = 20_000
WS_REFUSED = re.compile(r"^WebSocket connection to '.*' failed")


def text_of(n: int) -> str:
    """Message ``n`` of ``fill_room``: lines of different lengths, as in a real room."""
    return f"message {n}" + " with a longer line of text" * (n % 4)


async def fill_room(server: ChatServer, room: str, count: int, start: int = 1, user: str = "Bob") -> None:
    """``count`` messages from ``user``, all stored before this returns."""
    client = await ChatClient.connect(server.port, room, user=user)
    try:
        for n in range(start, start + count):
            await client.say(text_of(n))
        await client.messages(count, timeout=20)
    finally:
        client.close()


# The last message line is inside the log's box, and the log inside the window.
NEWEST_IN_VIEW = """() => {
    const log = document.getElementById("chat-log");
    const items = log.querySelectorAll("li.message");
    const last = items[items.length - 1].getBoundingClientRect(), box = log.getBoundingClientRect();
    return last.bottom <= box.bottom + 1 && last.top >= box.top - 1 && box.bottom <= window.innerHeight;
}"""


async def newest_in_view(page: Page) -> bool:
    return bool(await page.evaluate(NEWEST_IN_VIEW))


async def wait_newest_in_view(page: Page) -> None:
    await page.wait_for_function(NEWEST_IN_VIEW, timeout=5_000)


async def last_text(page: Page) -> str:
    return str(await page.locator("#chat-log li.message .text").last.text_content())


# ---- acceptance 1: the newest message is in view; a reader who scrolled up stays --


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
async def test_newest_message_is_in_view_on_join_and_as_25_more_arrive(
    make_server: Any, open_user: OpenUser, viewport: dict[str, int]
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "busy", 60)
    ann = await open_user(server, "Ann", viewport)
    await ann.enter_room("busy")
    await expect(ann.page.locator("#chat-log li.message")).to_have_count(50)  # the replay
    assert await last_text(ann.page) == text_of(60)
    await wait_newest_in_view(ann.page)

    await fill_room(server, "busy", 25, start=61)
    await expect(ann.page.locator("#chat-log li.message .text").last).to_have_text(text_of(85))
    await wait_newest_in_view(ann.page)
    await expect(ann.page.locator("#new-messages")).to_be_hidden()
    assert ann.unexpected_errors() == []


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
async def test_a_reader_who_scrolled_up_stays_put_and_is_told_of_new_messages(
    make_server: Any, open_user: OpenUser, viewport: dict[str, int]
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "reading", 40)
    ann = await open_user(server, "Ann", viewport)
    await ann.enter_room("reading")
    await wait_newest_in_view(ann.page)

    log = ann.page.locator("#chat-log")
    await log.hover()
    await ann.page.mouse.wheel(0, -300)  # as a reader does, with the wheel
    await ann.page.wait_for_function("""() => {
        const log = document.getElementById("chat-log");
        return log.scrollTop > 0 && log.scrollTop < log.scrollHeight - log.clientHeight - 100;
    }""")
    where = await log.evaluate("log => log.scrollTop")

    await fill_room(server, "reading", 5, start=41)
    await expect(ann.page.locator("#chat-log li.message .text").last).to_have_text(text_of(45))
    marker = ann.page.locator("#new-messages")
    await expect(marker).to_be_visible()
    await expect(marker).to_have_text("5 new messages below ↓")
    assert await log.evaluate("log => log.scrollTop") == where  # not moved
    assert not await newest_in_view(ann.page)

    await marker.click()
    await wait_newest_in_view(ann.page)
    await expect(marker).to_be_hidden()
    await fill_room(server, "reading", 1, start=46)  # following again
    await expect(ann.page.locator("#chat-log li.message .text").last).to_have_text(text_of(46))
    await wait_newest_in_view(ann.page)
    assert ann.unexpected_errors() == []


@pytest.mark.gen_test(timeout=60)
async def test_messages_missed_while_away_count_as_new_for_a_reader_who_scrolled_up(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "away", 40)
    ann = await open_user(server, "Ann", LAPTOP)
    await ann.enter_room("away")
    await wait_newest_in_view(ann.page)
    log = ann.page.locator("#chat-log")
    await log.evaluate("log => { log.scrollTop = 0; }")
    await ann.page.wait_for_function("() => document.getElementById('chat-log').scrollTop === 0")

    bob = await ChatClient.connect(server.port, "away", user="Bob")
    assert server.http is not None
    stopped = server.http
    stopped.stop()  # Ann's page is away while Bob sends 3 messages
    try:
        for socket in [s for s in server.registry.sockets if s.user == "Ann"]:
            socket.close(1001, "test: dropped")
        await expect(ann.status).to_have_attribute("data-state", "closed")
        for n in (41, 42, 43):
            await bob.say(text_of(n))
        await bob.messages(3)
        server.listen()
        await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        await expect(ann.page.locator("#chat-log li.message .text").last).to_have_text(text_of(43))
        await expect(ann.page.locator("#new-messages")).to_have_text("3 new messages below ↓")
        assert await log.evaluate("log => log.scrollTop") == 0
    finally:
        bob.close()
        await stopped.close_all_connections()


@pytest.mark.gen_test(timeout=60)
async def test_the_newest_message_stays_in_view_when_the_window_changes_size(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "resize", 40)
    ann = await open_user(server, "Ann", LAPTOP)
    await ann.enter_room("resize")
    await wait_newest_in_view(ann.page)
    short: ViewportSize = {"width": 1280, "height": 500}
    for size in (PHONE, short, LAPTOP):
        await ann.page.set_viewport_size(size)
        await wait_newest_in_view(ann.page)
    # A composer grown by a three-line message takes room from the log, not the newest line.
    await ann.page.locator("#chat-message-input").fill("one\ntwo\nthree")
    await wait_newest_in_view(ann.page)


# ---- acceptance 2: a phone in a busy room --------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_on_a_phone_with_80_messages_the_input_and_send_button_are_on_screen(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0, history=80)
    await fill_room(server, "phone", 80)
    ann = await open_user(server, "Ann", PHONE)
    await ann.enter_room("phone")
    await expect(ann.page.locator("#chat-log li.message")).to_have_count(80)
    for element in ("#chat-message-input", "#chat-message-submit", "#connection-status", "#room-title"):
        await expect(ann.page.locator(element)).to_be_in_viewport(ratio=1.0)
    # The page itself does not scroll: only the log does.
    sizes = await ann.page.evaluate("[document.scrollingElement.scrollHeight, window.innerHeight, window.scrollY]")
    assert sizes[0] <= sizes[1] and sizes[2] == 0, sizes
    await wait_newest_in_view(ann.page)

    # The member list is behind a toggle that says how many are in the room.
    toggle = ann.page.locator("#members-toggle")
    await expect(ann.page.locator("#member-list")).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(toggle).to_contain_text("1")
    await toggle.click()
    await expect(ann.page.locator("#member-list li")).to_have_text(["Ann"])
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await ann.page.keyboard.press("Escape")
    await expect(ann.page.locator("#member-list")).to_be_hidden()


# ---- acceptance 3: own messages, the composer, a refused text ------------------


@pytest.mark.gen_test(timeout=60)
async def test_own_messages_are_marked_and_names_are_told_apart(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    zoe = await open_user(server, "Zoë")
    for user in (ann, zoe):
        await user.enter_room("mine")
    await ann.say("from Ann", stored=True)
    await zoe.say("from Zoë")
    for user in (ann, zoe):
        await expect_log(user.page, [("Ann", "from Ann"), ("Zoë", "from Zoë")])
    await expect(ann.page.locator("#chat-log li.own .text")).to_have_text(["from Ann"])
    await expect(zoe.page.locator("#chat-log li.own .text")).to_have_text(["from Zoë"])
    colours = await ann.page.locator("#chat-log li.message .author").evaluate_all(
        "els => els.map(el => getComputedStyle(el).color)"
    )
    assert colours[0] != colours[1], colours
    # Full date and time on hover, in the time element's title; a day separator above.
    time = ann.page.locator("#chat-log li.message time").first
    assert re.search(r"\d{4}", await time.get_attribute("title") or ""), await time.get_attribute("title")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", await time.get_attribute("datetime") or "")
    await expect(ann.page.locator("#chat-log li.day")).to_have_text(["Today"])


@pytest.mark.gen_test(timeout=60)
async def test_an_empty_room_says_so_until_the_first_message(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    await ann.enter_room("empty")
    hint = ann.page.locator("#empty-hint")
    await expect(hint).to_be_visible()
    await expect(hint).to_contain_text("No messages in empty yet")
    await ann.say("first!")
    await expect(hint).to_be_hidden()


@pytest.mark.gen_test(timeout=60)
async def test_the_composer_sends_on_enter_breaks_lines_on_shift_enter_and_counts_code_points(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(max_message_chars=30)
    ann = await open_user(server, "Ann")
    await ann.enter_room("composer")
    box = ann.page.locator("#chat-message-input")
    await box.press_sequentially("line one")
    await box.press("Shift+Enter")
    await box.press_sequentially("line two")
    await box.press("Enter")
    await expect_log(ann.page, [("Ann", "line one\nline two")])

    counter = ann.page.locator("#char-counter")
    await box.fill("😀" * 30)  # 30 code points (60 UTF-16 units): exactly the limit
    await expect(counter).to_have_text("0 characters left")
    await box.press("Enter")
    await expect_log(ann.page, [("Ann", "line one\nline two"), ("Ann", "😀" * 30)])

    pasted = "x" * 35  # a paste over the limit is kept whole, not cut
    await box.fill(pasted)
    await expect(counter).to_have_text("5 characters over the limit of 30")
    await box.press("Enter")
    await expect(box).to_have_value(pasted)
    await expect(box).to_have_attribute("aria-invalid", "true")
    await expect(ann.page.locator("#chat-log li.pending")).to_have_count(0)
    await box.fill("short")
    await expect(counter).to_have_text("")
    assert ann.unexpected_errors() == []


# ---- the page after a restart with a new secret; reconnect countdown ----------


@pytest.mark.gen_test(timeout=60)
async def test_the_page_says_so_when_its_name_changed_after_a_restart(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(cookie_secret="first-secret")
    ann = await open_user(server, "Alice")
    await ann.enter_room("renamed")
    await server.stop()
    # The same port, a new secret: Alice's cookie no longer checks out.
    await make_server(cookie_secret="second-secret", port=server.port)
    await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
    name = ann.page.locator("#user-name")
    await expect(name).to_have_text(re.compile(r"^guest-"))
    guest = await name.text_content()
    await expect(ann.page.locator("#chat-log li.notice")).to_contain_text([f"You are now {guest}, not Alice"])
    await ann.say("who am I?")
    await expect_log(ann.page, [(str(guest), "who am I?")])
    await expect(ann.page.locator("#chat-log li.own .text")).to_have_text(["who am I?"])


@pytest.mark.gen_test(timeout=60)
async def test_the_reconnect_countdown_counts_down_and_retry_now_connects_at_once(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    await ann.enter_room("countdown")
    retry = ann.page.locator("#retry-now")
    await expect(retry).to_be_hidden()
    assert server.http is not None
    stopped = server.http
    stopped.stop()  # refuse new connections; drop Ann's
    try:
        for socket in list(server.registry.sockets):
            socket.close(1001, "test: dropped")
        # Failed retries back off: wait for a countdown of 3 s or more, then see it count.
        status = ann.status
        await expect(status).to_have_text(re.compile(r"retrying in ([3-9]|10) s"), timeout=RECONNECT_TIMEOUT_MS)
        first = int(re.findall(r"\d+", str(await status.text_content()))[0])
        await expect(status).to_have_text(f"disconnected · retrying in {first - 1} s", timeout=2_000)
        await expect(retry).to_be_visible()

        server.listen()
        await retry.click()
        # Connected well before the countdown would have run out.
        await ann.wait_connected(timeout=(first - 1) * 1000)
        await expect(retry).to_be_hidden()
        assert ann.unexpected_errors(allowed=WS_REFUSED) == []
    finally:
        await stopped.close_all_connections()


@pytest.mark.gen_test(timeout=60)
async def test_live_messages_are_announced_and_the_replay_is_not(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "spoken", 20)
    ann = await open_user(server, "Ann")
    await ann.enter_room("spoken")
    announcer = ann.page.locator("#announcer")
    await expect(announcer).to_have_attribute("aria-live", "polite")
    assert await ann.page.locator("#chat-log").get_attribute("aria-live") is None
    await fill_room(server, "spoken", 1, start=21)
    await expect(announcer.locator("p")).to_have_text([f"Bob: {text_of(21)}"])


# ---- the styled 404 ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_room_name_gets_a_page_that_explains_room_names(make_server: Any) -> None:
    server = await make_server()
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/chat/my-room/", raise_error=False, request_timeout=5
    )
    body = response.body.decode()
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "chat.css" in body and "No such page" in body
    assert "1 to 100 letters, digits or underscores" in body
    assert f'href="/chat/{quote("my_room")}/"' in body  # a name that would work
    other = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/no/such/thing", raise_error=False, request_timeout=5
    )
    assert other.code == 404 and "chat.css" in other.body.decode()
    escaped = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/chat/{quote('<b>x</b>')}/", raise_error=False, request_timeout=5
    )
    assert escaped.code == 404 and "<b>x</b>" not in escaped.body.decode()


# ---- acceptance 5: accessibility --------------------------------------------------


def axe_script(path: Path = AXE) -> str:
    """axe-core's source; a plain ``pytest`` without it fails saying which command installs it."""
    if not path.exists():
        pytest.fail(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing: install it with "
            "`make tests/a11y/node_modules/axe-core/axe.min.js` (npm ci in tests/a11y, pinned by its "
            "package-lock.json); `make test` does it before the tests",
            pytrace=False,
        )
    return path.read_text(encoding="utf-8")


def test_without_axe_core_the_failure_says_which_command_installs_it(backend: str) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        axe_script(ROOT / "tests" / "a11y" / "gone" / "axe.min.js")
    assert "tests/a11y/gone/axe.min.js is missing" in str(failed.value)
    assert "`make tests/a11y/node_modules/axe-core/axe.min.js`" in str(failed.value)


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical violations axe-core finds on the page as it is now."""
    # Evaluated by the driver, not added as a <script>: the page's CSP rightly refuses inline scripts.
    await page.evaluate(axe_script())
    result = await page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations = json.loads(result)["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


async def busy_room(server: ChatServer, user: User) -> None:
    await fill_room(server, "a11y", 12)
    await user.enter_room("a11y")
    await user.say("a message of my own")
    await expect(user.page.locator("#chat-log li.own")).to_have_count(1)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
async def test_axe_finds_no_serious_or_critical_violation_on_the_lobby_and_the_room_page(
    make_server: Any, open_user: OpenUser, viewport: dict[str, int]
) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann", viewport)  # on the lobby
    assert await axe_violations(ann.page) == []
    await busy_room(server, ann)
    assert await axe_violations(ann.page) == []
    await ann.page.goto(f"{ann.base}/chat/my-room/")
    assert await axe_violations(ann.page) == []


@pytest.mark.gen_test(timeout=60)
async def test_axe_finds_no_serious_violation_while_the_page_is_disconnected(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann")
    await busy_room(server, ann)
    assert server.http is not None
    stopped = server.http
    stopped.stop()
    try:
        for socket in list(server.registry.sockets):
            socket.close(1001, "test: dropped")
        await expect(ann.status).to_have_attribute("data-state", "closed")
        assert await axe_violations(ann.page) == []
    finally:
        await stopped.close_all_connections()
