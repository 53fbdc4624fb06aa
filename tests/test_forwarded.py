"""Forwarded headers and client addresses: who a connection is counted as (README, Security).

A process behind a proxy believes ``X-Real-Ip`` and ``X-Forwarded-For`` only
from ``--forwarded-allow-ips``; a client connecting to it straight, forging a
new address per socket, is one address with one budget.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import SettingsError, settings_from
from handlers.proxies import ForwardedPolicy
from tests.test_limits import handshake_status


@pytest.mark.gen_test(timeout=30)
async def test_forged_addresses_from_a_peer_not_allowed_are_one_budget(make_server: Any) -> None:
    # The proxy is elsewhere (10.9.9.9): this test's loopback peer is a client connecting straight.
    server = await make_server(behind_proxy=True, forwarded_allow_ips=("10.9.9.9",), max_connections_per_client=1)
    statuses = [await handshake_status(server.port, headers={"X-Real-Ip": f"10.0.0.{n}"}) for n in range(5)]
    assert statuses == [101, 429, 429, 429, 429]  # the audit: five forged addresses, five budgets
    statuses = [await handshake_status(server.port, headers={"X-Forwarded-For": f"10.0.1.{n}"}) for n in range(3)]
    assert statuses == [429, 429, 429]


@pytest.mark.gen_test(timeout=30)
async def test_the_allowed_proxy_still_speaks_for_its_clients(make_server: Any) -> None:
    server = await make_server(behind_proxy=True, max_connections_per_client=1)  # default: loopback allowed
    statuses = [await handshake_status(server.port, headers={"X-Real-Ip": f"10.0.0.{n}"}) for n in range(3)]
    assert statuses == [101, 101, 101]


def test_the_default_allow_list_is_the_loopback_addresses() -> None:
    from config.settings import Settings

    policy = ForwardedPolicy(Settings().forwarded_allow_ips)
    assert policy.trusts("127.0.0.1") and policy.trusts("::1") and policy.trusts("::ffff:127.0.0.1")
    assert not policy.trusts("192.0.2.2") and not policy.trusts("fd00::2") and not policy.trusts("")
    assert ForwardedPolicy(["10.0.0.0/8"]).trusts("10.1.2.3") and ForwardedPolicy(["*"]).trusts("203.0.113.9")


def test_the_allow_list_and_the_http_cap_are_settings_checked_at_start() -> None:
    env = {"CHAT_FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1", "CHAT_MAX_HTTP_CONNECTIONS_PER_CLIENT": "0"}
    settings = settings_from({}, env)
    assert settings.forwarded_allow_ips == ("10.0.0.0/8", "::1") and settings.max_http_connections_per_client == 0
    assert settings_from({}, {}).max_http_connections_per_client is None  # as --max-connections-per-client
    with pytest.raises(SettingsError, match="CHAT_FORWARDED_ALLOW_IPS entries must be IP addresses"):
        settings_from({}, {"CHAT_FORWARDED_ALLOW_IPS": "proxy.example"})
