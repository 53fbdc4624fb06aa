"""What the room socket reports to metrics: a protocol, so handlers need no metrics library.

``telemetry.metrics.Metrics`` implements it; a test may pass anything that does.
"""

from __future__ import annotations

from typing import Protocol


class SocketMetrics(Protocol):
    def connection_opened(self) -> None:
        """A room WebSocket opened."""

    def connection_closed(self, code: int | None) -> None:
        """A room WebSocket that was counted as opened closed, with this code (None: no close frame)."""

    def slow_client_dropped(self) -> None:
        """A client was dropped because its unsent data passed the bound."""

    def join_took(self, seconds: float) -> None:
        """A join's history was read (subscription included) in this long."""

    def replay_took(self, seconds: float) -> None:
        """A join's replay was written, up to ``ready``, in this long."""

    def connection_refused(self, reason: str) -> None:
        """A handshake refused by a limit: 503 server_full; 429 client_full, join_rate or room_create_rate."""

    def message_published(self) -> None:
        """A message was stored on the bus (not counted for resends)."""

    def message_rejected(self, reason: str) -> None:
        """A client frame was refused with this error code."""

    def publish_took(self, seconds: float) -> None:
        """One publish to the bus took this long, failures included."""
