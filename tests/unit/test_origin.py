"""The WebSocket origin check: same host (default ports made explicit), allowed origins, the proxy's host.

A wiring check through a real handshake on the in-process bus (the check
does not depend on the bus): the Host header is set by hand, so any public
host name can be tried against a server on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ON_MEMORY, handshake_status

PATH = "/ws/chat/room/"

SAME_HOST = [
    # Host header, Origin header, status
    ("chat.example.com", "http://chat.example.com", 101),
    ("chat.example.com", "http://chat.example.com:80", 101),  # default port written out
    ("chat.example.com:80", "http://chat.example.com", 101),
    ("chat.example.com", "https://chat.example.com", 101),
    ("chat.example.com:443", "https://chat.example.com", 101),
    ("chat.example.com", "https://chat.example.com:443", 101),
    ("CHAT.Example.com", "http://chat.EXAMPLE.COM", 101),  # host names ignore case
    ("[::1]", "http://[::1]:80", 101),
    ("[::1]:80", "http://[::1]", 101),
    ("chat.example.com:443", "http://chat.example.com", 403),  # http's default is 80
    ("chat.example.com:80", "https://chat.example.com", 403),  # https's default is 443
    ("chat.example.com", "http://chat.example.com:8080", 403),
    ("chat.example.com:8080", "http://chat.example.com", 403),
    ("chat.example.com", "http://evil.example", 403),
    ("chat.example.com", "http://chat.example.com.evil.example", 403),
    ("[::1]:8080", "http://[::1]", 403),
    ("chat.example.com", "null", 403),
    ("chat.example.com", "chat.example.com", 403),  # no scheme
]


@pytest.mark.gen_test(timeout=10)
@ON_MEMORY
@pytest.mark.parametrize("host,origin,status", SAME_HOST)
async def test_same_host_with_default_ports_made_explicit(
    make_server: Any, host: str, origin: str, status: int
) -> None:
    server = await make_server(allowed_hosts=("chat.example.com", "app.example"))  # public names, served here
    assert await handshake_status(server.port, PATH, {"Origin": origin}, host=host) == status


@pytest.mark.gen_test(timeout=10)
@ON_MEMORY
async def test_no_origin_is_not_a_browser_and_is_accepted(make_server: Any) -> None:
    server = await make_server(allowed_hosts=("anything.example",))
    assert await handshake_status(server.port, PATH, host="anything.example") == 101


@pytest.mark.gen_test(timeout=10)
@ON_MEMORY
@pytest.mark.parametrize(
    "origin,status",
    [
        ("https://app.example", 101),
        ("https://APP.example", 101),
        ("http://app.example", 403),
        ("https://b.example", 403),
    ],
)
async def test_allowed_origins_are_accepted_from_any_host(make_server: Any, origin: str, status: int) -> None:
    server = await make_server(allowed_origins=("https://app.example",), allowed_hosts=("chat.example.com",))
    assert await handshake_status(server.port, PATH, {"Origin": origin}, host="chat.example.com") == status


FORWARDED = {"Origin": "https://chat.example.com", "X-Forwarded-Host": "chat.example.com, inner.example"}


@pytest.mark.gen_test(timeout=10)
@ON_MEMORY
@pytest.mark.parametrize("behind_proxy,status", [(True, 101), (False, 403)])
async def test_the_forwarded_host_counts_only_behind_a_proxy(make_server: Any, behind_proxy: bool, status: int) -> None:
    server = await make_server(behind_proxy=behind_proxy)
    assert await handshake_status(server.port, PATH, FORWARDED, host="127.0.0.1") == status
