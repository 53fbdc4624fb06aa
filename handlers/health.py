"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from tornado.web import RequestHandler

from bus.room_bus import RoomBus


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


class ReadyHandler(RequestHandler):
    def initialize(self, bus: RoomBus) -> None:
        self._bus = bus

    def get(self) -> None:
        reason = self._bus.unavailable_reason()
        if reason is not None:
            self.set_status(503)
            self.write({"status": "unavailable", "reason": reason})
            return
        self.write({"status": "ready"})
