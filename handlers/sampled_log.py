"""A log event that may come thousands of times a second, written a few times a second at most.

During an outage every publish fails the same way; a line per failure would
flood the log (and cost the CPU the outage leaves). The first ``burst``
lines are written, then ``per_second``; each says how many were left out
since the last one (``suppressed``). The count of every failure is a metric's.
"""

from __future__ import annotations

from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from handlers.rate_limit import TokenBucket


class SampledLog:
    __slots__ = ("_log", "_event", "_budget", "_left_out")

    def __init__(self, log: FilteringBoundLogger, event: str, burst: int = 5, per_second: float = 1.0) -> None:
        self._log = log
        self._event = event
        self._budget = TokenBucket(per_second, burst)
        self._left_out = 0

    def warning(self, **fields: Any) -> None:
        """Write the event at warning level, unless this moment's share of lines is spent (then count it)."""
        if not self._budget.take():
            self._left_out += 1
            return
        if self._left_out:
            fields["suppressed"] = self._left_out
            self._left_out = 0
        self._log.warning(self._event, **fields)


# One process's failed publishes: an outage fails every one (chat_messages_rejected counts them all).
PUBLISH_FAILED = SampledLog(structlog.get_logger("chat.ws"), "bus.publish_failed")
