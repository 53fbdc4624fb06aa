"""A Host allowlist against DNS rebinding.

A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 reaches a
server on loopback as same-origin: its requests carry ``Host: evil.example``.
So a server on a loopback address answers only Host names that are IP
literals, ``localhost``, or configured in ``allowed_hosts``; any other gets
421. On a public address, and with ``allowed_hosts = *``, every Host is served
unless names are configured.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.routing import Rule
from tornado.web import Application, ErrorHandler

LOOPBACK_NAMES = frozenset({"localhost"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback(listen_host: str) -> bool:
    if listen_host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(listen_host).is_loopback
    except ValueError:
        return False


def host_policy(listen_host: str, allowed_hosts: tuple[str, ...]) -> frozenset[str] | None:
    """The Host names to serve besides IP literals, or None for any."""
    if "*" in allowed_hosts:
        return None
    if allowed_hosts:
        return frozenset(allowed_hosts) | LOOPBACK_NAMES
    return LOOPBACK_NAMES if _is_loopback(listen_host) else None


class HostCheckedApplication(Application):
    """An Application that answers 421 to a request for a Host it does not serve."""

    def __init__(self, handlers: list[Rule] | list[Any], allowed: frozenset[str] | None, **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self._allowed = allowed

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        if self._allowed is not None:
            name = request.host_name.lower()
            if not _is_ip(name) and name not in self._allowed:
                return self.get_handler_delegate(request, ErrorHandler, {"status_code": 421})
        return super().find_handler(request, **kwargs)
