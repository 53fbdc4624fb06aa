"""A Redis that cannot be reached at start-up: one line says so, the server keeps trying, /readyz
answers 503, and the room page shows one state, "the chat cannot store messages right now",
until Redis is there; then what was typed meanwhile is sent, once.

Real processes: ``server.py`` on a pseudo-terminal (as a person starts it), a redis-server
started late on the port the server was told, headless Chromium for the page.
"""

from __future__ import annotations

import os
import pty
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from ops.process_runner import Process, free_port
from runtime.process import shown_url
from tests.browser import OpenUser, browser, expect_log, io_loop, open_user  # noqa: F401  (fixtures)
from tests.helpers import ON_MEMORY
from tests.services import RedisServer
from tests.test_cli import SECRET_ENV, SERVER, read_until

RECONNECT_TIMEOUT_MS = 15_000  # the page's longest backoff is 10 s
CANNOT_STORE = "the chat cannot store messages right now"


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_start_up_says_in_one_line_that_redis_cannot_be_reached_then_that_the_chat_runs(tmp_path: Path) -> None:
    redis_port, port = free_port(), free_port()
    terminal, stderr_end = pty.openpty()
    argv = [*SERVER, "--port", str(port), "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--log-format", "json"]
    process = Process("server.py", argv, SECRET_ENV, log_path=tmp_path / "stdout.log", own_group=True)
    process.stderr = stderr_end
    process.start()
    os.close(stderr_end)
    redis_server = RedisServer(tmp_path / "redis")
    try:
        shown = read_until(terminal, re.compile(r"Ctrl-C stops it\)\r?\n"))
        assert shown.count("\n") == 1 and "Chat is running" not in shown, shown
        assert shown.startswith(f"Chat cannot reach Redis at redis://127.0.0.1:{redis_port}/0 ("), shown
        assert "Connection refused" in shown and "/readyz answers 503" in shown
        assert readyz(port) == 503
        redis_server.start(port=redis_port)  # it kept trying
        later = read_until(terminal, re.compile(r"Chat is running: open http://127\.0\.0\.1:\d+/chat/"))
        assert later.strip().startswith("Chat is running"), later
        assert readyz(port) == 200
        assert process.stop() == 0
    finally:
        process.kill()
        os.close(terminal)
        redis_server.stop()


def test_a_password_in_the_redis_url_is_never_shown() -> None:
    assert shown_url("redis://:s3cret@10.0.0.7:6379/0") == "redis://:***@10.0.0.7:6379/0"
    assert shown_url("redis://chat:s3cret@redis.example/2") == "redis://chat:***@redis.example/2"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.gen_test(timeout=90)
@ON_MEMORY  # the server below is given its own (not yet running) Redis
async def test_the_page_shows_one_state_while_messages_cannot_be_stored_and_sends_them_after(
    tmp_path: Path, make_server: Any, open_user: OpenUser
) -> None:
    redis_port = free_port()
    server = await make_server(redis_url=f"redis://127.0.0.1:{redis_port}/0")
    redis_server = RedisServer(tmp_path / "redis")
    try:
        ann = await open_user(server, "Ann")
        await ann.page.goto(f"{ann.base}/chat/waiting/")
        await expect(ann.status).to_contain_text(CANNOT_STORE, timeout=RECONNECT_TIMEOUT_MS)
        await ann.page.locator("#chat-message-input").fill("typed while Redis was away")
        await ann.page.click("#chat-message-submit")
        await expect(ann.page.locator("#chat-log li.pending")).to_have_count(1)
        await expect(ann.status).to_contain_text(CANNOT_STORE)
        await expect(ann.page.locator("#chat-log li.notice")).to_have_count(0)  # no "Not sent" beside it

        redis_server.start(port=redis_port)
        await ann.wait_connected(timeout=RECONNECT_TIMEOUT_MS)
        await expect_log(ann.page, [("Ann", "typed while Redis was away")], timeout=RECONNECT_TIMEOUT_MS)
        await expect(ann.page.locator("#chat-log li.pending")).to_have_count(0)
        await expect(ann.page.locator("#chat-log li.notice")).to_have_count(0)
    finally:
        redis_server.stop()
