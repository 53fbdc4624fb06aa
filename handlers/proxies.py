"""Which peers may speak for the client: forwarded headers are believed only from the proxy's addresses.

With ``--behind-proxy``, ``X-Real-Ip``, ``X-Forwarded-For``, ``X-Forwarded-Proto``,
``X-Scheme`` and ``X-Forwarded-Host`` say who the client is and how it came.
A client that reaches a process directly could send them too, and be five
addresses with five budgets; so they count only when the peer of the TCP
connection is in ``--forwarded-allow-ips`` (default the loopback addresses,
where the launcher's nginx connects from, as uvicorn and gunicorn do).
"""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any, Iterable

from tornado.httputil import HTTPServerRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardedPolicy:
    """The peers whose forwarded headers are trusted: addresses or networks, ``*`` for any."""

    def __init__(self, allowed: Iterable[str]) -> None:
        entries = tuple(allowed)
        self.any = "*" in entries
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != "*")

    def trusts(self, peer: str) -> bool:
        """Whether forwarded headers from a TCP peer at ``peer`` are believed."""
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False  # a Unix socket or an unknown family: not a listed address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def peer_address(connection: Any) -> str:
    """The TCP peer's own address of an HTTP connection, whatever the forwarded headers said."""
    context = getattr(connection, "context", None)
    address = getattr(context, "address", None)
    return str(address[0]) if isinstance(address, tuple) and address else ""


@cache
def policy(allowed: tuple[str, ...]) -> ForwardedPolicy:
    """The policy of a ``--forwarded-allow-ips`` value, parsed once."""
    return ForwardedPolicy(allowed)


def forwarded_from_proxy(request: HTTPServerRequest, behind_proxy: bool, allowed: tuple[str, ...]) -> bool:
    """Whether this request's forwarded headers are believed: behind a proxy, and from one of its addresses."""
    return behind_proxy and policy(allowed).trusts(peer_address(request.connection))


def address_key(address: str) -> str:
    """The key an address's budgets and connection slots are kept under: IPv4 as it is, IPv6 by its /64.

    One IPv6 subscriber gets a /64 (or more) and may pick any address in it,
    so counting per /128 gave one client 2**64 budgets. An IPv4-mapped IPv6
    address is its IPv4 address.
    """
    if ":" not in address:
        return address  # IPv4, or no address: the common case, no parsing
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
