"""The README's screenshots of the admin page, on a desktop and on a phone.

    .venv/bin/python scripts/admin_screenshots.py [--out docs/screenshots]

Starts a redis-server on a free port, two chat processes in this process
(node-1 with the server API and its admin page, node-2) and a third as a real
``server.py`` process (node-3), people in a few rooms over real WebSockets
and most of a minute of traffic at a changing rate. node-3 is then stopped with
SIGSTOP, so the page shows one silent process and its lag growing. Chromium
(Playwright) has ``/admin/`` open at 1440x900 and 390x844 from the start, on
the busiest room, and saves ``admin-desktop.png`` and ``admin-phone.png``
near the end, the traffic still running.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.logging import configure_logging  # noqa: E402
from config.settings import Settings  # noqa: E402
from runtime.chat_server import ChatServer  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.client import TEST_SECRET, ChatClient  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402
from tests.services import RedisServer  # noqa: E402

KEY = "screenshots-api-key-0123456789abcdef"
ROOMS = {  # room -> (process index, person); the first two of each room talk
    "release_planning": [(0, "Ann"), (1, "Bob"), (0, "Zoë"), (1, "Kenji"), (2, "Priya"), (0, "Lars")],
    "support": [(1, "Maya"), (1, "Omar"), (2, "Ines")],
    "design_review": [(0, "Tom"), (2, "Uma"), (2, "Zoë")],
    "random": [(1, "Bob"), (2, "Kenji")],
}
LINES = [
    "The build for 1.4 is green on every platform.",
    "Can someone check the release note draft?",
    "<script>alert(1)</script> stays text on the admin page too",
    "Priya: the migration ran in 3 minutes on staging.",
    "Shipping at 16:00 unless someone objects.",
]
TRAFFIC_SECONDS = 50.0
PAUSED_SECONDS = 9.0


async def talk(clients: list[ChatClient], seconds: float) -> None:
    """Messages in turn, faster and slower (a wave), each waiting for its own echo."""
    start, speaker = time.monotonic(), itertools.cycle(clients)
    for n in itertools.count():
        elapsed = time.monotonic() - start
        if elapsed > seconds:
            return
        client = next(speaker)
        await client.say(LINES[n % len(LINES)] if n % 7 == 0 else f"update {n}")
        await client.recv_chat()
        await asyncio.sleep(0.01 if (elapsed // 12) % 2 else 0.05)  # pacing: busier and quieter spells


async def shoot(out: Path) -> list[Path]:
    with tempfile.TemporaryDirectory() as scratch:
        redis = RedisServer(Path(scratch)).start()
        url = redis.url()
        settings = dict(port=0, cookie_secret=TEST_SECRET, log_format="json", redis_url=url, status_interval=0.5)
        one = ChatServer(Settings(node_id="node-1", api_port=0, api_keys=(KEY,), **settings))  # type: ignore[arg-type]
        two = ChatServer(Settings(node_id="node-2", **settings))  # type: ignore[arg-type]
        three = ServerProcess(
            ["--redis-url", url, "--node-id", "node-3", "--status-interval", "0.5", "--presence-timeout", "300"],
            Path(scratch) / "node-3.log",
            env={"CHAT_COOKIE_SECRET": TEST_SECRET},
        )
        await one.start()
        await two.start()
        await three.start()
        ports = [one.port, two.port, three.port]
        try:
            clients = {
                room: [await ChatClient.connect(ports[where], room, user=name) for where, name in people]
                for room, people in ROOMS.items()
            }

            async def pause_three() -> None:
                await asyncio.sleep(TRAFFIC_SECONDS - PAUSED_SECONDS)  # the scene: node-3 stops near the end
                three.pause()

            async with chromium() as browser:
                pages = await open_pages(browser, one)
                traffic = asyncio.gather(
                    talk(clients["release_planning"][:2], TRAFFIC_SECONDS),
                    talk(clients["support"][:2], TRAFFIC_SECONDS * 0.6),
                    talk(clients["design_review"][:1], TRAFFIC_SECONDS),  # node-1 only: on while node-3 is stopped
                    pause_three(),
                )
                await asyncio.sleep(TRAFFIC_SECONDS - 2)  # the charts fill as the traffic runs
                saved = [await photograph(page, out / f"{name}.png") for name, page in pages]
                await traffic
                return saved
        finally:
            three.resume()
            three.kill()
            await one.stop()
            await two.stop()
            redis.stop()


async def open_pages(browser: Any, server: ChatServer) -> list[tuple[str, Any]]:
    """The admin page at both sizes, key given and the busiest room open, before the traffic starts."""
    assert server.api is not None
    pages = []
    for name, width, height in (("admin-desktop", 1440, 900), ("admin-phone", 390, 844)):
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{server.api.port}/admin/")
        await page.fill("#key", KEY)
        await page.click("#key-form button[type=submit]")
        await page.get_by_role("button", name="release_planning").click()
        await page.wait_for_selector("#members li")
        pages.append((name, page))
    return pages


async def photograph(page: Any, path: Path) -> Path:
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.screenshot(path=str(path))
    await page.context.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configure_logging("screenshots", "json", open("/dev/null", "w"), "error")
    for path in asyncio.run(shoot(out)):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
