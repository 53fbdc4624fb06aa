"""The Django example host site (examples/django_site) in front of the chat, in headless Chromium.

One origin, as a site would deploy it: nginx sends /chat/, /ws/ and /static/
to the chat server (token mode, ``team_*`` rooms private) and everything else
to Django's development server. Two Django users whose group grants
``team_red`` chat there; a third, logged in as well, is refused (4003) and
the page says so. The chat server runs as ``server.py`` with its API on, and
the home page's "Notify the room" button publishes through it
(clients/chat_api_client.py) as the logged-in user; the third user cannot.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from string import Template
from typing import Any, Iterator

import pytest
from playwright.async_api import BrowserContext, Page, expect
from tornado.httpclient import AsyncHTTPClient

from tests.api_kit import API_KEY, call
from tests.browser import browser, io_loop  # noqa: F401  (fixtures)
from tests.helpers import TIMEOUT, eventually, free_port
from tests.processes import ServerProcess
from tests.tokens import TOKEN_SECRET

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "django_site"
PASSWORD = "a-long-password-for-the-example"
MAKE_USERS = f"""
from django.contrib.auth.models import Group, User
red = Group.objects.create(name="team_red")
for name in ("ann", "bob", "eve"):
    user = User.objects.create_user(name, password="{PASSWORD}")
    if name != "eve":
        user.groups.add(red)
"""


def site_environment(tmp_path: Path, api_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "DJANGO_"))}
    env.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        DJANGO_DATABASE=str(tmp_path / "site.sqlite3"),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        CHAT_TOKEN_SECRET=TOKEN_SECRET,
        CHAT_TOKEN_SECONDS="60",
        CHAT_API_URL=f"http://127.0.0.1:{api_port}",
        CHAT_API_KEY=API_KEY,
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=SITE, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []
        self.chat: list[ServerProcess] = []

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        self.running.append(process)
        return process

    async def start_chat(self, api_port: int, log: Path) -> ServerProcess:
        """``server.py`` as the README runs it, its secrets in the environment, the API on ``api_port``."""
        chat = ServerProcess(
            ["--behind-proxy", "--token-refresh-url", "/chat-token/", "--private-rooms", "team_*"]
            + ["--api-port", str(api_port), "--log-format", "json"],
            log,
            env={"CHAT_TOKEN_SECRET": TOKEN_SECRET, "CHAT_API_KEYS": API_KEY},
        )
        self.chat.append(chat)
        return await chat.start()

    def stop(self) -> None:
        for chat in self.chat:
            chat.kill()
        for process in self.running:
            process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


async def answers(url: str) -> bool:
    try:
        response = await AsyncHTTPClient().fetch(
            url, raise_error=False, request_timeout=TIMEOUT, follow_redirects=False
        )
    except OSError:
        return False
    return response.code < 500


async def log_in(context: BrowserContext, base: str, name: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{base}/accounts/login/")
    await page.fill("#id_username", name)
    await page.fill("#id_password", PASSWORD)
    async with page.expect_navigation():
        await page.click("#login-submit")
    await expect(page.locator("h1")).to_have_text(f"Hello, {name}")
    return page


async def notify(home: Page, room: str, text: str) -> None:
    form = home.locator(f"form.notify[data-room='{room}']")
    await form.locator("input[name='text']").fill(text)
    async with home.expect_navigation():
        await form.locator("button:text('Notify the room')").click()


async def forged_notify(page: Page, room: str, text: str, with_csrf_token: bool = True) -> int:
    """POST the notify form's fields from the page's own origin, as a script would; the status."""
    status: int = await page.evaluate(
        """async ([room, text, withToken]) => {
            const body = new FormData();
            body.append("room", room);
            body.append("text", text);
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            if (withToken) body.append("csrfmiddlewaretoken", token);
            const response = await fetch("/notify/", {method: "POST", body: body, redirect: "manual"});
            return response.status;
        }""",
        [room, text, with_csrf_token],
    )
    return status


async def room_texts(api_port: int, room: str) -> list[str]:
    status, page = await call(api_port, "GET", f"/api/rooms/{room}/messages?limit=100")
    assert status == 200, page
    return [message["message"] for message in page["messages"]]


@pytest.mark.gen_test(timeout=180)
async def test_django_users_chat_and_notify_their_private_room_and_a_third_can_do_neither(
    browser: Any, processes: Processes, tmp_path: Path
) -> None:
    api_port = free_port()
    env = site_environment(tmp_path, api_port)
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", MAKE_USERS)
    django_port, nginx_port = free_port(), free_port()
    processes.start(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{django_port}"],
        tmp_path / "django.log",
        cwd=SITE,
        env=env,
    )
    chat = await processes.start_chat(api_port, tmp_path / "chat.log")
    config = tmp_path / "nginx.conf"
    config.write_text(
        Template((SITE / "nginx.conf").read_text()).safe_substitute(
            user_line="user root root;" if os.geteuid() == 0 else "",
            run_dir=tmp_path,
            port=nginx_port,
            chat_port=chat.port,
            django_port=django_port,
        )
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    processes.start(
        [nginx, "-e", str(tmp_path / "nginx-start.log"), "-c", str(config), "-p", str(tmp_path)], tmp_path / "nginx.log"
    )
    base = f"http://127.0.0.1:{nginx_port}"
    await eventually(lambda: answers(f"{base}/accounts/login/"), 30, "Django behind nginx")
    await eventually(lambda: answers(f"{base}/chat/"), 10, "the chat behind nginx")

    pages: dict[str, Page] = {}
    for name in ("ann", "bob", "eve"):
        context = await browser.new_context(viewport={"width": 1000, "height": 700})
        pages[name] = await log_in(context, base, name)
    for name in ("ann", "bob"):
        home = pages[name]
        async with home.expect_navigation():
            await home.click("#rooms a:text('team_red')")
        await expect(home.locator("#connection-status")).to_have_attribute("data-state", "open", timeout=10_000)
        await expect(home.locator("#user-name")).to_have_text(name)

    ann, bob = pages["ann"], pages["bob"]
    await expect(ann.locator("#member-list li")).to_have_text(["ann", "bob"], timeout=10_000)
    await expect(ann.locator("#member-list li.me")).to_have_text("ann")
    await ann.fill("#chat-message-input", "hello bob, only we can read this")
    await ann.click("#chat-message-submit")
    await expect(bob.locator("#chat-log li.message .text")).to_have_text(["hello bob, only we can read this"])
    await bob.fill("#chat-message-input", "hi ann")
    await bob.click("#chat-message-submit")
    await expect(ann.locator("#chat-log li.message .author")).to_have_text(["ann", "bob"])
    await expect(ann.locator("#chat-log li.message .text")).to_have_text(["hello bob, only we can read this", "hi ann"])

    eve = pages["eve"]
    await expect(eve.locator("#rooms")).not_to_contain_text("team_red")  # her groups grant no room
    started = time.monotonic()
    await eve.goto(f"{base}/chat/team_red/")
    await expect(eve.locator("#connection-status")).to_have_attribute("data-state", "denied")
    await expect(eve.locator("#connection-status")).to_have_text("not allowed in this room")
    await expect(eve.locator("#chat-log")).to_contain_text("You are not allowed in this room.")
    await expect(eve.locator("#chat-log li.message")).to_have_count(0)
    assert time.monotonic() - started < 30

    # ann's home page: the "Notify the room" button speaks into team_red as ann, through the server API.
    notice = "the build is green, ship it"
    ann_home = await ann.context.new_page()
    await ann_home.goto(f"{base}/")
    await notify(ann_home, "team_red", notice)
    await expect(ann_home.locator("h1")).to_have_text("Hello, ann")  # redirected home
    await expect(ann_home.locator("#notices li.success")).to_have_text("Sent to team_red.")
    await expect(bob.locator("#chat-log li.message .author")).to_have_text(["ann", "bob", "ann"])
    await expect(bob.locator("#chat-log li.message .text")).to_have_text(
        ["hello bob, only we can read this", "hi ann", notice]
    )
    await expect(ann.locator("#chat-log li.message .text").last).to_have_text(notice)
    await notify(ann_home, "team_red", "   ")  # only blanks: the form says why, nothing is sent
    await expect(ann_home.locator("#notices li.error")).to_contain_text("Not sent to team_red")
    assert await forged_notify(ann_home, "team_red", "no token", with_csrf_token=False) == 403  # CSRF

    # eve's groups grant no room: no form, and a forged post (with her CSRF token) is refused.
    await eve.goto(f"{base}/")
    await expect(eve.locator("form.notify")).to_have_count(0)
    assert await forged_notify(eve, "team_red", "eve was here") == 403
    assert await forged_notify(eve, "lobby", "eve was here") == 403  # open rooms too: only granted ones
    texts = await room_texts(api_port, "team_red")
    assert texts == ["hello bob, only we can read this", "hi ann", notice]
