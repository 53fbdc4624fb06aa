"""The room page across a restart of a ``make run``-style server, in headless Chromium.

With ``--data-file`` two pages left open through a restart keep everything
and say nothing about lost messages; without it (history really lost) each
page says so once, in words, shown as information rather than an error.
The server is a real ``server.py`` process (``tests/processes.py``), restarted
with SIGTERM, as Ctrl-C on ``make run`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser import OpenUser, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.client import TEST_SECRET
from tests.helpers import ON_MEMORY
from tests.processes import ServerProcess

pytestmark = ON_MEMORY
RECONNECT_TIMEOUT_MS = 15_000  # the page's longest backoff is 10 s
GAP = "Some messages sent while you were disconnected may be missing"


def server_process(tmp_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        [*args, "--rate-limit", "0", "--log-format", "json"],
        tmp_path / "server.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET},
    )


@pytest.mark.gen_test(timeout=90)
async def test_two_open_pages_lose_nothing_and_show_no_notice_across_a_restart(
    tmp_path: Path, open_user: OpenUser
) -> None:
    server = await server_process(tmp_path, "--data-file", str(tmp_path / "run" / "chat.sqlite3")).start()
    try:
        ann, bob = await open_user(server, "Ann"), await open_user(server, "Bob")
        for user in (ann, bob):
            await user.enter_room("team")
        conversation = []
        for i in range(6):
            speaker = (ann, bob)[i % 2]
            await speaker.say(f"before {i}", stored=True)
            conversation.append((speaker.name, f"before {i}"))
        for user in (ann, bob):
            await expect_log(user.page, conversation)

        await server.restart()
        for user in (ann, bob):
            await user.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        await bob.say("after the restart", stored=True)
        conversation.append(("Bob", "after the restart"))
        for user in (ann, bob):
            await expect_log(user.page, conversation)
            await expect(user.page.locator("#chat-log li.notice")).to_have_count(0)
            assert user.sockets[-1].split("?since=")[1], user.sockets  # they resumed
        reloaded = await open_user(server, "Cy")
        await reloaded.enter_room("team")
        await expect_log(reloaded.page, conversation)
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=90)
async def test_a_history_really_lost_is_said_once_in_plain_words_not_as_an_error(
    tmp_path: Path, open_user: OpenUser
) -> None:
    server = await server_process(tmp_path).start()  # no data file: a restart loses the history
    try:
        ann = await open_user(server, "Ann")
        await ann.enter_room("team")
        await ann.say("before", stored=True)
        for _ in range(2):
            await server.restart()
            await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
            await ann.say("after", stored=True)
        notices = ann.page.locator("#chat-log li.notice")
        await expect(notices).to_have_count(1)
        await expect(notices).to_contain_text(GAP)
        await expect(notices).to_have_class("notice info")
        colour = await notices.evaluate("n => getComputedStyle(n).color")
        assert colour == "rgb(95, 102, 112)", colour  # --muted, not the red of a refusal
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=90)
async def test_a_page_resumes_with_since_once_it_has_shown_a_message_and_not_before(
    tmp_path: Path, open_user: OpenUser
) -> None:
    """Why a rolling restart may leave a page's last socket without ``since``: it had nothing to resume from."""
    server = await server_process(tmp_path, "--data-file", str(tmp_path / "chat.sqlite3")).start()
    try:
        ann = await open_user(server, "Ann")
        await ann.enter_room("empty")
        await server.restart()  # moved before any message: nothing to resume from
        await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        assert "?since=" not in ann.sockets[-1]
        await ann.say("now there is one", stored=True)
        await server.restart()
        await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        assert "?since=" in ann.sockets[-1], ann.sockets
        await expect_log(ann.page, [("Ann", "now there is one")])
    finally:
        await server.stop()
