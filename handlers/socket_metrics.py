"""What the room socket reports to metrics: a protocol, so handlers need no metrics library.

``ops.metrics.Metrics`` implements it; a test may pass anything that does.
"""

from __future__ import annotations

from typing import Protocol


class SocketMetrics(Protocol):
    def connection_opened(self) -> None:
        """A room WebSocket opened."""

    def connection_closed(self) -> None:
        """A room WebSocket that was counted as opened closed."""

    def connection_refused(self, reason: str) -> None:
        """A handshake refused by a limit: 503 server_full; 429 client_full, join_rate or room_create_rate."""

    def message_published(self) -> None:
        """A message was stored on the bus (not counted for resends)."""

    def message_rejected(self, reason: str) -> None:
        """A client frame was refused with this error code."""

    def publish_took(self, seconds: float) -> None:
        """One publish to the bus took this long, failures included."""
