"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser download does not work on these machines; the flags
keep Chromium off the (closed) network.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A launched browser, closed (with its driver) on the way out."""
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()
    finally:
        await playwright.stop()
