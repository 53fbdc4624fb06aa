"""The README's screenshots of the room page, on a desktop and on a phone.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts a chat server in this process (in-process bus, a free port), has three
people talk in a room over real WebSockets, then opens the room page as one of
them in Debian's Chromium (Playwright) at 1440x900 and at 390x844, and saves
``room-desktop.png``, ``room-phone.png`` and ``room-phone-members.png``.
The room shows runs of one author grouped, an edited message, links, and
(the page hidden while the last two messages arrive, a mention among them)
the "New messages" line. Times on the page are the time the script runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeout
from tornado.httpclient import HTTPRequest
from tornado.web import create_signed_value
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.logging import configure_logging  # noqa: E402
from config.settings import Settings  # noqa: E402
from handlers.identity import USER_COOKIE  # noqa: E402
from runtime.chat_server import ChatServer  # noqa: E402
from tests.browser import chromium  # noqa: E402

ROOM = "design_review"
TIMEOUT = 10.0
CONVERSATION = [
    ("Bob", "Morning! Is the new room page up on staging?"),
    ("Zoë", "It is: https://staging.example.org/chat/design_review/ (scroll up for older pages)."),
    ("Ann", "Trying it on my phone now."),
    ("Ann", "The input stays on screen even with 80 messages in the room."),
    ("Bob", "Names have colours, and your own messages are marked."),
    ("Zoë", "Shift+Enter for a new line:\n- one\n- two"),
    ("Bob", "<b>markup</b> still shows as text, as it should."),
    ("Ann", "Ship it. I'll write the release note."),
]
EDITED = (2, "Trying it on my phone now: scrolling up loads the older messages.")  # Ann fixes her message
WHILE_AWAY = [  # said while the viewer's tab is hidden: after the "New messages" line
    ("Bob", "@Ann the release note draft: https://notes.example.org/room-page"),
    ("Zoë", "שלום לכולם! גם עברית נראית טוב כאן."),  # right to left within its line
]
VIEWER = "Ann"
HIDE = """hidden => {
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


class Person:
    """One WebSocket into the room, signed in by cookie."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def join(cls, port: int, name: str, secret: str) -> "Person":
        cookie = f"{USER_COOKIE}={create_signed_value(secret, USER_COOKIE, name).decode()}"
        request = HTTPRequest(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/", headers={"Cookie": cookie})
        return cls(await asyncio.wait_for(websocket_connect(request), TIMEOUT))

    async def say(self, text: str) -> str:
        """Send, and wait until the room has it (so the log keeps the script's order); its id."""
        await self.conn.write_message(json.dumps({"message": text}))
        return str((await self.wait_for("message", text))["id"])

    async def edit(self, message_id: str, text: str) -> None:
        await self.conn.write_message(json.dumps({"type": "edit", "id": message_id, "message": text}))
        await self.wait_for("edited", text)

    async def wait_for(self, kind: str, text: str) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.conn.read_message(), TIMEOUT)
            if raw is None:
                raise RuntimeError("the server closed the connection")
            frame: dict[str, Any] = json.loads(raw)
            if frame.get("type") == kind and frame.get("message") == text:
                return frame

    def typing(self) -> None:
        self.conn.write_message(json.dumps({"typing": True}))


async def shoot(out: Path) -> list[Path]:
    secret = secrets.token_urlsafe(32)
    server = ChatServer(Settings(port=0, node_id="screenshots", cookie_secret=secret, log_format="json"))
    await server.start()
    try:
        people = {name: await Person.join(server.port, name, secret) for name in ("Bob", "Zoë", "Ann")}
        ids = [await people[name].say(text) for name, text in CONVERSATION]
        await people[CONVERSATION[EDITED[0]][0]].edit(ids[EDITED[0]], EDITED[1])
        return await photograph(server.port, secret, people, out)
    finally:
        await server.stop()


async def photograph(port: int, secret: str, people: dict[str, Person], out: Path) -> list[Path]:
    cookie = {
        "name": USER_COOKIE,
        "value": create_signed_value(secret, USER_COOKIE, VIEWER).decode(),
        "url": f"http://127.0.0.1:{port}/",
    }
    saved = []
    shots = (
        ("room-desktop", (1440, 900), False),
        ("room-phone", (390, 844), False),
        ("room-phone-members", (390, 844), True),
    )
    async with chromium() as browser:
        pages = []
        for _, viewport, _ in shots:
            context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            await context.add_cookies([cookie])  # type: ignore[list-item]
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{port}/chat/{ROOM}/")
            await page.wait_for_selector("#connection-status[data-state=open]", timeout=TIMEOUT * 1000)
            await page.wait_for_function(
                f"() => document.querySelectorAll('#chat-log li.message').length === {len(CONVERSATION)}"
            )
            await page.evaluate(HIDE, True)
            pages.append(page)
        for who, text in WHILE_AWAY:
            await people[who].say(text)
        for (name, _, members), page in zip(shots, pages):
            context = page.context
            count = len(CONVERSATION) + len(WHILE_AWAY)
            await page.wait_for_function(f"() => document.querySelectorAll('#chat-log li.message').length === {count}")
            await page.evaluate(HIDE, False)
            await show_typing(page, people["Zoë"])
            if members:
                await page.click("#members-toggle")
            await page.locator("#chat-message-input").fill("Looks good on the phone too")
            path = out / f"{name}.png"
            await page.screenshot(path=str(path))
            saved.append(path)
            await context.close()
    return saved


async def show_typing(page: Any, person: Person) -> None:
    """The server passes one typing notice per user per second: send until the page shows one."""
    for _ in range(5):
        person.typing()
        try:
            await page.wait_for_function(
                "() => document.getElementById('typing-status').textContent !== ''", timeout=1500
            )
            return
        except PlaywrightTimeout:
            continue
    raise RuntimeError("the page never showed the typing notice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configure_logging("screenshots", "json")
    for path in asyncio.run(shoot(out)):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
