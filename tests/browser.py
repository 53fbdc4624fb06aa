"""Headless Chromium for tests: now in tests/helpers.py (``chromium``, ``launch_chromium``).

Kept as a re-export while branches that import it from here are merged; new
code imports from tests.helpers.
"""

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, chromium, launch_chromium

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium", "launch_chromium"]
