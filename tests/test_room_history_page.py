"""The room page of a room kept open all day, in headless Chromium: older pages on scrolling up,
edits and deletions, links, unread counts and mentions, grouping, right-to-left text, phone details.

None of this depends on the bus (the protocol is tested on every bus in
tests/test_history_changes.py): every test runs on the in-process one. The
fixtures are tests/browser.py's; synchronisation is Playwright's ``expect``
and ``wait_for_function`` with timeouts.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser import OpenUser, User, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.client import ChatClient
from tests.test_browser import drop_sockets_of, stop_accepting
from tests.test_room_page import LAPTOP, PHONE, RECONNECT_TIMEOUT_MS, WS_REFUSED, axe_violations, fill_room, text_of

pytestmark = pytest.mark.parametrize("backend", ["memory"])

# The reader reaches the top of the log; the first message line and where it is, measured
# before the scroll event (dispatched later) can load anything.
TO_THE_TOP = """() => {
    const log = document.getElementById("chat-log");
    log.scrollTop = 0;
    const first = log.querySelector("li.message");
    return [first.dataset.id, first.getBoundingClientRect().top];
}"""
TOP_OF = """id => document.querySelector(`#chat-log li.message[data-id="${id}"]`).getBoundingClientRect().top"""
HIDE = """hidden => {
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
    Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
    document.dispatchEvent(new Event("visibilitychange"));
}"""
# A Notification that records its calls, with the permission the test gives when asked.
FAKE_NOTIFICATION = """(() => {
    window.__notes = [];
    window.__asked = 0;
    class FakeNotification {
        constructor(title, options) { window.__notes.push({title: title, body: options && options.body}); }
        close() {}
        static requestPermission() {
            window.__asked += 1;
            FakeNotification.permission = "granted";
            return Promise.resolve("granted");
        }
    }
    FakeNotification.permission = "default";
    window.Notification = FakeNotification;
})();"""


def messages(page: Page) -> Any:
    return page.locator("#chat-log li.message")


def line(page: Page, text: str) -> Any:
    return messages(page).filter(has_text=text)


# ---- older history ------------------------------------------------------------------


@pytest.mark.gen_test(timeout=120)
async def test_scrolling_to_the_top_loads_pages_of_50_without_moving_the_top_line(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "long", 300)
    ann = await open_user(server, "Ann", LAPTOP)
    await ann.enter_room("long")
    await expect(messages(ann.page)).to_have_count(50)
    head = ann.page.locator("#chat-log li.history-head")
    await expect(head).to_be_hidden()

    for shown in (100, 150, 200, 250, 300):
        top_id, top = await ann.page.evaluate(TO_THE_TOP)
        await expect(messages(ann.page)).to_have_count(shown)
        await expect(head).not_to_have_attribute("data-state", "loading")
        moved = await ann.page.evaluate(TOP_OF, top_id) - top
        assert abs(moved) <= 2, (shown, moved)
    await expect(head).to_have_text("This is the beginning of the room.")
    await expect(head).to_be_visible()
    await expect(messages(ann.page).locator(".text")).to_have_text([text_of(n) for n in range(1, 301)])
    ids = await messages(ann.page).evaluate_all("items => items.map(li => li.dataset.id)")
    assert len(set(ids)) == 300
    # At the beginning, reaching the top asks for nothing more.
    await ann.page.evaluate(TO_THE_TOP)
    await expect(messages(ann.page)).to_have_count(300)
    assert ann.unexpected_errors() == []


@pytest.mark.gen_test(timeout=90)
async def test_older_pages_load_after_a_resume(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "again", 80)
    ann = await open_user(server, "Ann", LAPTOP)
    await ann.enter_room("again")
    await expect(messages(ann.page)).to_have_count(50)
    assert drop_sockets_of(server, "Ann") == 1
    await expect(ann.status).to_have_attribute("data-state", "closed")
    await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
    assert "?since=" in ann.sockets[-1]

    await ann.page.evaluate(TO_THE_TOP)
    await expect(messages(ann.page)).to_have_count(80)
    await expect(ann.page.locator("#chat-log li.history-head")).to_have_text("This is the beginning of the room.")
    await expect(messages(ann.page).locator(".text")).to_have_text([text_of(n) for n in range(1, 81)])


# ---- edits and deletions --------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_edits_and_deletions_show_in_other_tabs_after_a_reload_and_after_a_resume(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann")
    await ann.enter_room("fix")
    other_tab = await ann.context.new_page()
    await other_tab.goto(f"{ann.base}/chat/fix/")
    carol = await open_user(server, "Carol")
    await carol.enter_room("fix")
    await ann.say("to be deleted", stored=True)
    await ann.say("helo wrold", stored=True)
    for page in (other_tab, carol.page):
        await expect_log(page, [("Ann", "to be deleted"), ("Ann", "helo wrold")])

    stopped = stop_accepting(server)  # Carol is away for both changes
    try:
        assert drop_sockets_of(server, "Carol") == 1
        await expect(carol.status).to_have_attribute("data-state", "closed")

        box = ann.page.locator("#chat-message-input")
        await box.press("ArrowUp")  # Up in an empty composer: edit the last own message
        await expect(box).to_have_value("helo wrold")
        await expect(ann.page.locator("#edit-bar")).to_be_visible()
        await box.fill("hello world")
        await box.press("Enter")
        await expect(box).to_have_value("")
        await expect(ann.page.locator("#edit-bar")).to_be_hidden()
        for page in (ann.page, other_tab):
            await expect(line(page, "hello world").locator(".text")).to_have_text("hello world (edited)")

        doomed = line(ann.page, "to be deleted")
        await doomed.hover()
        delete = doomed.locator(".delete-button")
        await delete.click()
        await expect(delete).to_have_text("Confirm delete")  # asks once
        await expect(messages(other_tab)).to_have_count(2)  # nothing deleted yet
        await delete.click()
        for page in (ann.page, other_tab):
            await expect(messages(page)).to_have_count(1)
        await expect(messages(carol.page)).to_have_count(2)  # really away
    finally:
        server.listen()
        await stopped.close_all_connections()

    await carol.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
    await expect(messages(carol.page).locator(".text")).to_have_text(["hello world (edited)"])
    await other_tab.reload()
    await expect(messages(other_tab).locator(".text")).to_have_text(["hello world (edited)"])
    assert ann.unexpected_errors() == [] and carol.unexpected_errors(allowed=WS_REFUSED) == []


@pytest.mark.gen_test(timeout=60)
async def test_escape_cancels_an_edit_and_others_messages_have_no_edit_controls(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "mine", 1, user="Bob")
    ann = await open_user(server, "Ann")
    await ann.enter_room("mine")
    await ann.say("mine", stored=True)
    await expect(line(ann.page, "message 1").locator(".actions")).to_have_count(0)
    box = ann.page.locator("#chat-message-input")
    await box.fill("half typed")
    await line(ann.page, "mine").hover()
    await line(ann.page, "mine").locator(".edit-button").click()
    await expect(box).to_have_value("mine")
    await box.press("Escape")
    await expect(box).to_have_value("half typed")  # what was being typed comes back
    await expect(ann.page.locator("#edit-bar")).to_be_hidden()
    await expect(line(ann.page, "mine").locator(".edited")).to_have_count(0)


@pytest.mark.gen_test(timeout=60)
async def test_an_edit_refused_past_the_edit_window_comes_back_into_the_composer(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0, edit_window=0.05)
    ann = await open_user(server, "Ann")
    await ann.enter_room("slow")
    await ann.say("typo", stored=True)
    sent_ms = int(await line(ann.page, "typo").get_attribute("data-ts") or 0)
    await ann.page.wait_for_function(f"() => Date.now() > {sent_ms + 200}")  # the window is wall-clock time
    box = ann.page.locator("#chat-message-input")
    await box.press("ArrowUp")
    await box.fill("fixed")
    await box.press("Enter")
    await expect(ann.page.locator("#chat-log li.notice")).to_have_text(
        "Not saved: a message may be edited for 0.05 seconds after it was sent"
    )
    await expect(box).to_have_value("fixed")  # nothing typed is lost
    await expect(ann.page.locator("#edit-bar")).to_be_visible()
    await expect(line(ann.page, "typo").locator(".text")).to_have_text("typo")


# ---- links ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_web_urls_become_links_and_nothing_else_does(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann")
    await ann.enter_room("links")
    typed = "look: https://example.org/a?b=<c> and javascript:alert(1) data:text/html,<b>x</b>"
    await ann.say(typed, stored=True)
    await ann.say("(see http://example.com/x_(y).) <a href='https://evil.example'>z</a>", stored=True)

    first = line(ann.page, "look:")
    await expect(first.locator(".text")).to_have_text(typed)
    link = first.locator(".text a")
    await expect(link).to_have_count(1)
    assert await link.get_attribute("href") == "https://example.org/a?b=<c>"
    await expect(link).to_have_text("https://example.org/a?b=<c>")
    assert await link.get_attribute("rel") == "noopener noreferrer nofollow"
    assert await link.get_attribute("target") == "_blank"
    await expect(first.locator(".text *:not(a)")).to_have_count(0)

    second = line(ann.page, "(see")
    hrefs = await second.locator(".text a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["http://example.com/x_(y)"]  # not "https://evil.example'>z</a>": no such host, so text
    await expect(ann.page.locator("#chat-log b, #chat-log [onclick]")).to_have_count(0)
    assert ann.dialogs == [] and ann.unexpected_errors() == []


# ---- unread and mentions ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_hidden_tab_counts_unread_in_the_title_and_marks_where_the_reader_left(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    await fill_room(server, "away", 3)
    ann = await open_user(server, "Ann")
    await ann.enter_room("away")
    title = await ann.page.title()
    await ann.page.evaluate(HIDE, True)
    bob = await ChatClient.connect(server.port, "away", user="Bob")
    try:
        for text in ("one", "two", "three"):
            await bob.say(text)
        await bob.messages(3)
        await expect(ann.page).to_have_title(f"(3) {title}")
        unread = ann.page.locator("#chat-log li.unread-line")
        await expect(unread).to_have_text("New messages")
        following = unread.locator("xpath=following-sibling::li[1]")
        await expect(following.locator(".text")).to_have_text("one")
        await expect(following).not_to_have_class("cont")  # the line starts a new run: the author shows
        await ann.page.evaluate(HIDE, False)
        await expect(ann.page).to_have_title(title)
        await expect(unread).to_have_count(1)  # still marks where the reader left
        await ann.say("back", stored=True)  # own messages never count
        await bob.say("seen")
        await expect(line(ann.page, "seen")).to_have_count(1)
        await expect(ann.page).to_have_title(title)
    finally:
        bob.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_mention_is_highlighted_and_notifies_once_permission_was_given_by_a_click(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann")
    await ann.context.add_init_script(FAKE_NOTIFICATION)
    await ann.enter_room("ping")
    assert await ann.page.evaluate("window.__asked") == 0  # not asked on load
    button = ann.page.locator("#notify-button")
    await button.click()
    await expect(button).to_be_hidden()
    assert await ann.page.evaluate("window.__asked") == 1

    await ann.page.evaluate(HIDE, True)
    bob = await ChatClient.connect(server.port, "ping", user="Bob")
    try:
        for text in ("hi @ann, look", "@Annabel is someone else", "no mention"):
            await bob.say(text)
        await bob.messages(3)
        await expect(messages(ann.page)).to_have_count(3)
        notes = await ann.page.evaluate("window.__notes")
        assert notes == [{"title": "Bob mentioned you in #ping", "body": "hi @ann, look"}]
        mentioned = line(ann.page, "hi @ann")
        await expect(mentioned.locator("mark.mention")).to_have_text("@ann")
        await expect(mentioned).to_have_class("message mentions-me")
        await expect(ann.page.locator("#chat-log mark.mention")).to_have_count(1)
        await ann.page.evaluate(HIDE, False)
        await bob.say("@Ann while you look")
        await expect(line(ann.page, "while you look").locator("mark")).to_have_count(1)
        assert len(await ann.page.evaluate("window.__notes")) == 1  # visible: no notification
    finally:
        bob.close()


# ---- grouping, right-to-left, phone ---------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_runs_are_grouped_rtl_lays_out_right_to_left_and_a_phone_taps_for_time(
    make_server: Any, open_user: OpenUser
) -> None:
    server = await make_server(rate_limit=0)
    bob = await ChatClient.connect(server.port, "phone", user="שרה")
    try:
        for text in ("שלום לכולם", "מה שלומכם?", "مرحبا"):
            await bob.say(text)
        await bob.messages(3)
    finally:
        bob.close()
    ann = await open_user(server, "Ann", PHONE)
    await ann.page.goto(f"{ann.base}/chat/phone/")
    await ann.wait_connected()
    await expect(messages(ann.page)).to_have_count(3)
    await expect(ann.page.locator("#chat-log li.cont")).to_have_count(2)
    first = messages(ann.page).first
    assert await first.locator(".author").get_attribute("dir") == "auto"
    assert await first.locator(".text").get_attribute("dir") == "auto"
    assert await first.locator(".text").evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert await first.locator(".author").evaluate("el => getComputedStyle(el).direction") == "rtl"

    grouped = messages(ann.page).nth(1)
    await expect(grouped.locator(".time")).to_be_hidden()
    await grouped.click()  # a tap
    await expect(grouped.locator(".time")).to_be_visible()

    await ann.page.locator("#members-toggle").click()
    members = ann.page.locator("#members")
    await expect(members).to_be_visible()
    await ann.page.locator("#members-close").click()
    await expect(members).to_be_hidden()
    await expect(ann.page.locator("#members-toggle")).to_be_focused()


@pytest.mark.gen_test(timeout=60)
async def test_deleting_the_first_of_a_run_shows_the_author_on_the_next(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann")
    await ann.enter_room("runs")
    bob = await ChatClient.connect(server.port, "runs", user="Bob")
    try:
        for text in ("first", "second", "third"):
            await bob.say(text)
        first, *_ = await bob.messages(3)
        await expect(ann.page.locator("#chat-log li.cont")).to_have_count(2)
        bob.send({"type": "delete", "id": first["id"]})
        await expect(messages(ann.page).locator(".text")).to_have_text(["second", "third"])
        await expect(ann.page.locator("#chat-log li.cont")).to_have_count(1)
        await expect(messages(ann.page).first.locator(".author")).to_be_visible()
        await expect(ann.page.locator("#chat-log li.day")).to_have_count(1)
    finally:
        bob.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_message_taller_than_the_screen_is_folded_with_show_more(make_server: Any, open_user: OpenUser) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann", PHONE)
    await ann.enter_room("tall")
    tall = "\n".join(f"line {n}" for n in range(80))
    bob = await ChatClient.connect(server.port, "tall", user="Bob")
    try:
        await bob.say(tall)
        await bob.messages(1)
    finally:
        bob.close()
    item = line(ann.page, "line 0")
    await expect(item).to_have_class("message folded")
    height = await item.evaluate("el => el.getBoundingClientRect().height")
    assert height < 844
    more = item.locator(".show-more")
    await expect(more).to_have_attribute("aria-expanded", "false")
    await more.click()
    await expect(item).not_to_have_class("message folded")
    await expect(more).to_have_text("Show less")
    assert await item.evaluate("el => el.getBoundingClientRect().height") > 844


# ---- accessibility with the new elements ------------------------------------------------------


async def lively_room(server: Any, ann: User) -> None:
    """A room with every new element: a history head, links, an edit, a mention, a fold, an unread line."""
    await fill_room(server, "lively", 60, user="Bob")
    await ann.enter_room("lively")
    await ann.page.evaluate(TO_THE_TOP)
    await expect(ann.page.locator("#chat-log li.history-head")).to_have_text("This is the beginning of the room.")
    await ann.say("see https://example.org/docs", stored=True)
    await ann.page.locator("#chat-message-input").press("ArrowUp")
    await ann.page.locator("#chat-message-input").fill("see https://example.org/docs (fixed)")
    await ann.page.locator("#chat-message-input").press("Enter")
    await expect(ann.page.locator("#chat-log .edited")).to_have_count(1)
    await ann.page.evaluate(HIDE, True)
    bob = await ChatClient.connect(server.port, "lively", user="Bob")
    try:
        await bob.say("@Ann have a look\n" + "\n".join(f"line {n}" for n in range(60)))
        await bob.messages(1)
    finally:
        bob.close()
    await expect(ann.page.locator("#chat-log li.unread-line")).to_have_count(1)
    await expect(ann.page.locator("#chat-log li.folded")).to_have_count(1)
    await ann.page.evaluate(HIDE, False)
    await line(ann.page, "see https").hover()  # its edit and delete buttons showing


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
async def test_axe_finds_no_serious_or_critical_violation_with_the_new_elements(
    make_server: Any, open_user: OpenUser, viewport: Any
) -> None:
    server = await make_server(rate_limit=0)
    ann = await open_user(server, "Ann", viewport)
    await lively_room(server, ann)
    await expect(ann.page.locator("#chat-log mark.mention")).to_have_count(1)
    assert await axe_violations(ann.page) == []
    await ann.page.locator("#chat-message-input").press("ArrowUp")  # the edit bar
    await expect(ann.page.locator("#edit-bar")).to_be_visible()
    if viewport == PHONE:
        await ann.page.locator("#members-toggle").click()
        await expect(ann.page.locator("#members-close")).to_be_visible()
    assert await axe_violations(ann.page) == []
