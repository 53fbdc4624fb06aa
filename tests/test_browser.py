"""The pages in a real browser: the lobby and the room page in headless Chromium.

How it runs, and why
--------------------
The server runs in-process (the ``make_server`` fixture) and Playwright's
*async* API runs in the same event loop, inside pytest-tornado's ``gen_test``
(fixtures in tests/browser.py). Being in-process gives the tests the
server's objects: they can drop one page's socket from the server side, and refuse new connections for a while,
without killing the process and losing the in-memory bus (a restarted
memory-bus server would start with an empty room, so "nothing missed after a
resume" could not be shown). The sync API is not an option here: it refuses
to run while an asyncio loop is running, and the server needs one.

One browser serves the whole module. Playwright objects belong to the loop
they were made in, so the module uses a module-scoped ``io_loop``: every
test, and the browser, use that one loop (each test still gets its own server
and its own browser contexts).
The chat tests run on every bus backend of conftest.BACKENDS; the lobby and
refusal tests, which do not depend on the bus, on the in-process one.

Chromium is Debian's (/usr/bin/chromium); Playwright's own download does not
work here. The flags keep it off the (closed) network.

Synchronisation is only Playwright's ``expect``/``wait_for_*`` (timeouts on
all of them) and reading the server's frames with the test client's timed
reads. Test names say which acceptance point each one shows.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import tornado.httpserver
from playwright.async_api import Browser, expect
from tornado.netutil import bind_sockets

from runtime.chat_server import ChatServer
from tests.browser import TIMEOUT_MS, OpenUser, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.client import ChatClient
from tests.helpers import ON_MEMORY

RECONNECT_TIMEOUT_MS = 15_000  # the room page's longest backoff is 10 s

# A reconnect that failed while the tests refuse connections: the browser
# reports it on the console, which is expected there and nowhere else.
WS_REFUSED = re.compile(r"^WebSocket connection to '.*' failed")

# The lobby and refusal tests are about the page and the socket handler: one
# bus backend is enough for them. The chat tests run on every backend of
# conftest.BACKENDS.
ONE_BACKEND = ON_MEMORY


def drop_sockets_of(server: ChatServer, user: str) -> int:
    """Close, from the server side, every room socket of one user (1001, going away)."""
    sockets = [s for s in server.registry.sockets if getattr(s, "user", None) == user]
    for socket in sockets:
        socket.close(1001, "test: dropped by the server")
    return len(sockets)


def stop_accepting(server: ChatServer) -> tornado.httpserver.HTTPServer:
    """Close the listening socket: new connections are refused, open ones live on."""
    assert server.http is not None
    stopped = server.http
    stopped.stop()
    return stopped


# ---- 1. two users chat both ways ---------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_two_users_chat_both_ways_with_button_and_enter(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    zoe = await open_user(server, "Zoë")
    for user in (ann, zoe):
        await user.enter_room("general")

    await ann.say("Hello from Ann (button)", stored=True)
    await zoe.say("Hi Ann, Zoë here (Enter)", enter=True, stored=True)
    await ann.say("Ann again, with Enter", enter=True, stored=True)
    await zoe.say("Zoë again, with the button")

    conversation = [
        ("Ann", "Hello from Ann (button)"),
        ("Zoë", "Hi Ann, Zoë here (Enter)"),
        ("Ann", "Ann again, with Enter"),
        ("Zoë", "Zoë again, with the button"),
    ]
    for user in (ann, zoe):
        await expect_log(user.page, conversation)
        await expect(user.page.locator("#chat-log li.pending")).to_have_count(0)
        assert user.dialogs == [] and user.unexpected_errors() == []
    assert all(url.endswith("/ws/chat/general/") for url in ann.sockets + zoe.sockets)


# ---- 1b. who is in the room, who is typing ------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_each_page_lists_who_is_in_the_room_and_drops_who_left(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    bob = await open_user(server, "Bob")
    for user in (ann, bob):
        await user.enter_room("members")
    for user in (ann, bob):  # Bob's page from its presence list, Ann's from Bob's join
        await expect(user.page.locator("#member-list li")).to_have_text(["Ann", "Bob"])

    await bob.page.locator("#chat-message-input").fill("Hel")
    await expect(ann.page.locator("#typing-status")).to_have_text("Bob is typing…")
    await expect(bob.page.locator("#typing-status")).to_have_text("")

    await bob.page.goto(f"{bob.base}/chat/")  # Bob leaves the room
    await expect(ann.page.locator("#member-list li")).to_have_text(["Ann"])
    assert ann.unexpected_errors() == [] and bob.unexpected_errors() == []


# ---- 2. user text is text, never markup ---------------------------------------


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND  # how the page renders text does not depend on the bus
async def test_markup_in_messages_and_names_shows_as_literal_text(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    mallory = await open_user(server, "<i>Mallory</i>")
    for user in (ann, mallory):
        await user.enter_room("xss")

    payloads = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", '"><svg onload=alert(3)>&lt;b&gt;']
    await mallory.say(payloads[0], stored=True)
    await ann.say(payloads[1], enter=True, stored=True)
    await mallory.say(payloads[2], stored=True)
    # A plain message last: when it shows, anything the payloads could have
    # started (an image error, a script) has had its turn.
    await ann.say("plain")

    expected = [
        ("<i>Mallory</i>", payloads[0]),
        ("Ann", payloads[1]),
        ("<i>Mallory</i>", payloads[2]),
        ("Ann", "plain"),
    ]
    for user in (ann, mallory):
        await expect_log(user.page, expected)
        log = user.page.locator("#chat-log")
        await expect(log.locator("img, script, svg, i, b")).to_have_count(0)
        # Each message is three plain spans (time, author, text), and its author's own the edit and delete buttons.
        await expect(log.locator("li.message > :not(.actions)")).to_have_count(3 * len(expected))
        await expect(log.locator("li.message > :not(.actions) *")).to_have_count(0)
        await expect(log.locator("li.message.own .actions button")).to_have_count(4)
        assert user.dialogs == [], user.dialogs
        assert user.unexpected_errors() == []
    await expect(mallory.page.locator("#user-name")).to_have_text("<i>Mallory</i>")
    await expect(mallory.page.locator("header i")).to_have_count(0)


# ---- 3. a reload shows the history ------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_reload_shows_the_history_in_order_once_each(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    bob = await open_user(server, "Bob")
    for user in (ann, bob):
        await user.enter_room("history")
    history = [("Ann", "one"), ("Bob", "two"), ("Ann", "three"), ("Bob", "four")]
    for author, text in history:
        await (ann if author == "Ann" else bob).say(text)
    await expect_log(ann.page, history)
    ids_before = await ann.page.locator("#chat-log li.message").evaluate_all("i => i.map(li => li.dataset.id)")

    await ann.page.reload()
    await ann.wait_connected()
    await expect_log(ann.page, history)
    ids_after = await ann.page.locator("#chat-log li.message").evaluate_all("i => i.map(li => li.dataset.id)")
    assert ids_after == ids_before

    # And the reloaded page is live again, both ways.
    await bob.say("five, after the reload", stored=True)
    await ann.say("six, from the reloaded page")
    history += [("Bob", "five, after the reload"), ("Ann", "six, from the reloaded page")]
    for user in (ann, bob):
        await expect_log(user.page, history)
        assert user.unexpected_errors() == []


# ---- 4. the lobby goes to the room ---------------------------------------------


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND
@pytest.mark.parametrize(
    "typed, room, enter",
    [
        ("café", "café", True),
        ("café", "café", False),
        ("cafe\u0301", "café", True),  # a decomposed é: the same room as a typed one
        ("日本語_2", "日本語_2", True),
        ("lobby_1", "lobby_1", False),
    ],
)
async def test_lobby_goes_to_the_room(
    make_server: Any, open_user: OpenUser, typed: str, room: str, enter: bool
) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")  # leaves the page on the lobby
    box = ann.page.locator("#room-name-input")
    await box.fill(typed)
    if enter:
        await box.press("Enter")
    else:
        await ann.page.click("#room-name-submit")
    await ann.page.wait_for_url(f"{ann.base}/chat/{quote(room)}/")
    await expect(ann.page.locator("#room-title")).to_have_text(room)
    await ann.wait_connected()
    assert ann.sockets == [f"ws://127.0.0.1:{server.port}/ws/chat/{quote(room)}/"]
    await ann.say(f"hello {room}")
    await expect_log(ann.page, [("Ann", f"hello {room}")])
    assert ann.unexpected_errors() == []


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND
@pytest.mark.parametrize("room", ["a b", "a-b", "a/b", "  "])
async def test_lobby_refuses_a_bad_room_name_and_stays(make_server: Any, open_user: OpenUser, room: str) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    error = ann.page.locator("#room-name-error")
    await expect(error).to_be_hidden()
    box = ann.page.locator("#room-name-input")
    await box.fill(room)
    await box.press("Enter")
    await expect(error).to_be_visible()
    assert ann.page.url == f"{ann.base}/chat/"
    assert ann.sockets == [] and ann.unexpected_errors() == []


# ---- 5. reconnect, resume, resend ---------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_reconnect_resumes_with_since_and_sends_what_was_typed_while_down(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    await ann.enter_room("resume")
    bob = await ChatClient.connect(server.port, "resume", user="Bob")
    stopped: tornado.httpserver.HTTPServer | None = None
    try:
        await bob.say("before the drop")
        await bob.messages(1)
        await expect_log(ann.page, [("Bob", "before the drop")])
        resume_point = await ann.page.locator("#chat-log li.message").last.get_attribute("data-id")
        assert resume_point

        # The server refuses new connections and drops Ann's socket; Bob's stays.
        stopped = stop_accepting(server)
        assert drop_sockets_of(server, "Ann") == 1
        await expect(ann.status).to_have_attribute("data-state", "closed")
        await expect(ann.status).to_contain_text("disconnected")

        # While Ann is away: Bob talks, Ann types a message of her own.
        away = ["said while Ann was away", "and a second one"]
        for text in away:
            await bob.say(text)
        assert [frame["message"] for frame in await bob.messages(2)] == away
        await ann.say("typed while disconnected", enter=True)
        await expect(ann.page.locator("#chat-log li.pending .text")).to_have_text(["typed while disconnected"])
        await expect_log(ann.page, [("Bob", "before the drop")])  # really away: nothing arrived live

        # The server accepts again: the page reconnects by itself.
        server.listen()
        # The next retry comes after the page's backoff (at most 10 s by design;
        # about a second here, as Ann was away for about a second).
        await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        frame = await bob.recv_type("message")
        assert (frame["user"], frame["message"]) == ("Ann", "typed while disconnected")
        await bob.say("after the reconnect")
        frame = await bob.recv_type("message")  # next is Bob's own: Ann's was published once
        assert (frame["user"], frame["message"]) == ("Bob", "after the reconnect")

        await expect_log(
            ann.page,
            [
                ("Bob", "before the drop"),
                ("Bob", away[0]),
                ("Bob", away[1]),
                ("Ann", "typed while disconnected"),
                ("Bob", "after the reconnect"),
            ],
        )
        await expect(ann.page.locator("#chat-log li.pending")).to_have_count(0)
        first, *reconnects = ann.sockets
        assert first.endswith("/ws/chat/resume/") and reconnects
        assert all(url.endswith(f"/ws/chat/resume/?since={quote(resume_point)}") for url in reconnects)
        assert ann.unexpected_errors(allowed=WS_REFUSED) == []
        # A full resume: no "missing messages" notice.
        await expect(ann.page.locator("#chat-log li.notice")).to_have_count(0)
    finally:
        bob.close()
        if stopped is not None:
            await stopped.close_all_connections()


@pytest.mark.gen_test(timeout=30)
async def test_every_page_reconnects_after_the_server_drops_all_sockets(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server()
    ann = await open_user(server, "Ann")
    bob = await open_user(server, "Bob")
    for user in (ann, bob):
        await user.enter_room("dropall")
        await user.record_states()
    await ann.say("before", stored=True)
    await bob.say("also before")
    before = [("Ann", "before"), ("Bob", "also before")]
    for user in (ann, bob):
        await expect_log(user.page, before)

    server.registry.close_all(1001, "test: going away")
    for user in (ann, bob):
        # Closed, then connected again: the closed state is short (the first
        # retry comes within half a second), so it is read from the record.
        await user.page.wait_for_function(
            """() => {
            const states = window.__states, closed = states.indexOf("closed");
            return closed >= 0 && states.indexOf("open", closed) > closed;
        }""",
            timeout=TIMEOUT_MS,
        )
        await user.wait_connected()

    await bob.say("after", stored=True)
    await ann.say("also after", enter=True)
    for user in (ann, bob):
        await expect_log(user.page, before + [("Bob", "after"), ("Ann", "also after")])
        assert len(user.sockets) == 2 and "?since=" in user.sockets[1]
        assert user.unexpected_errors() == []


# ---- refusals: shown to the sender, as text; retried when worth retrying ------


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND
async def test_a_refused_message_is_shown_as_not_sent_and_its_text_put_back(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(max_message_chars=10)
    ann = await open_user(server, "Ann")

    await ann.enter_room("limits")
    # The page checks the limit itself; to see what it does when the server
    # refuses anyway (a server restarted with a lower limit under an open
    # page), the page is told the limit is 4096.
    await ann.page.locator("#chat-message-input").evaluate("box => { box.dataset.maxChars = '4096'; }")
    box = ann.page.locator("#chat-message-input")
    await box.fill("<b>much too long</b>")
    await box.press("Enter")
    notices = ann.page.locator("#chat-log li.notice")
    await expect(notices).to_have_text(["Not sent: a message holds at most 10 characters"])
    await expect(ann.page.locator("#chat-log li.pending")).to_have_count(0)
    await expect(box).to_have_value("<b>much too long</b>")  # back in the composer, not lost
    await ann.say("short")  # the connection is still usable
    await expect_log(ann.page, [("Ann", "short")])
    await expect(ann.page.locator("#chat-log b")).to_have_count(0)
    assert ann.unexpected_errors() == []


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND
async def test_a_rate_limited_message_stays_pending_and_is_retried(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=1.0, rate_burst=1)
    ann = await open_user(server, "Ann")
    await ann.enter_room("slow")
    await ann.say("first")
    await ann.say("second, too soon")
    await expect(ann.page.locator("#chat-log li.notice")).to_have_text(
        ["Not sent yet, retrying: too many messages, slow down"]
    )
    # The page retries what waited 3 s; by then the bucket has a token again.
    await expect_log(ann.page, [("Ann", "first"), ("Ann", "second, too soon")], timeout=10_000)
    await expect(ann.page.locator("#chat-log li.pending")).to_have_count(0)
    assert ann.unexpected_errors() == []


# ---- wss: on an https page ----------------------------------------------------


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, made with Debian's openssl."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.gen_test(timeout=30)
@ONE_BACKEND
async def test_an_https_page_connects_with_wss(make_server: Any, browser: Browser, tls_context: ssl.SSLContext) -> None:
    server = await make_server()
    https = tornado.httpserver.HTTPServer(server.app, ssl_options=tls_context)
    [listening] = bind_sockets(0, "127.0.0.1")
    https.add_sockets([listening])
    context = await browser.new_context(ignore_https_errors=True)
    try:
        page = await context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await page.goto(f"https://127.0.0.1:{listening.getsockname()[1]}/chat/secure/")
        await expect(page.locator("#connection-status")).to_have_attribute("data-state", "open")
        assert sockets and all(url.startswith("wss://") for url in sockets)
    finally:
        await context.close()
        https.stop()
