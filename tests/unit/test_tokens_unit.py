"""Token mode's pure parts: its settings, room wildcards, tokens in a query, the bus's user keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bus import frames
from bus.user_key import user_key, user_parts
from config.settings import Settings, SettingsError, settings_from
from handlers.jwks import MAX_AGE, JwksCache
from handlers.token_gate import token_in_query
from handlers.tokens import wildcard_match
from tests.tokens import TOKEN_SECRET, RsaKey


def settings(flags: dict[str, object] | None = None, env: dict[str, str] | None = None) -> Settings:
    return settings_from(flags or {}, env or {})


def test_token_mode_is_off_without_a_key_and_on_with_the_secret_from_the_environment() -> None:
    assert not settings().token_mode
    on = settings(env={"CHAT_TOKEN_SECRET": TOKEN_SECRET})
    assert on.token_mode and on.token_secret == TOKEN_SECRET and TOKEN_SECRET not in repr(on)


def test_the_token_secret_on_a_command_line_is_refused_and_says_where_it_goes() -> None:
    with pytest.raises(SettingsError, match="CHAT_TOKEN_SECRET"):
        settings({"token_secret": TOKEN_SECRET})


def test_the_secret_file_is_read_and_a_short_secret_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(TOKEN_SECRET + "\n")
    assert settings({"token_secret_file": str(path)}).token_secret == TOKEN_SECRET
    path.write_text("short")
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        settings({"token_secret_file": str(path)})
    with pytest.raises(SettingsError, match="cannot read"):
        settings({"token_secret_file": str(tmp_path / "missing")})


def test_a_public_key_file_must_hold_a_public_key_and_one_key_source_only(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(RsaKey("k").public_pem())
    assert settings({"token_public_key": str(pem)}).token_mode
    pem.write_text("not a key")
    with pytest.raises(SettingsError, match="not a PEM public key"):
        settings({"token_public_key": str(pem)})
    with pytest.raises(SettingsError, match="one key"):
        settings({"token_jwks_url": "http://127.0.0.1/jwks"}, {"CHAT_TOKEN_SECRET": TOKEN_SECRET})


def test_private_rooms_need_token_mode_and_room_patterns() -> None:
    with pytest.raises(SettingsError, match="need token mode"):
        settings({"private_rooms": "staff"})
    env = {"CHAT_TOKEN_SECRET": TOKEN_SECRET}
    assert settings({"private_rooms": "staff, team_*"}, env).private_rooms == ("staff", "team_*")
    with pytest.raises(SettingsError, match="--private-rooms entries"):
        settings({"private_rooms": "a-b"}, env)
    with pytest.raises(SettingsError, match="--token-refresh-url must"):
        settings({"token_refresh_url": "//elsewhere/x"}, env)


@pytest.mark.parametrize(
    "pattern,room,expected",
    [
        ("staff", "staff", True),
        ("staff", "staff2", False),
        ("team_*", "team_", True),
        ("team_*", "team_a", True),
        ("team_*", "xteam_a", False),
        ("*_ops", "db_ops", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
        ("*", "anything", True),
        ("a*a*a*a*a*a*b", "a" * 100, False),  # no exponential backtracking
    ],
)
def test_room_wildcards(pattern: str, room: str, expected: bool) -> None:
    assert wildcard_match(pattern, room) is expected


@pytest.mark.parametrize(
    "query,found",
    [
        ({"since": [b"1-0"]}, False),
        ({"token": [b"x"]}, True),
        ({"Access_Token": [b"x"]}, True),
        ({"q": [b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig"]}, True),
    ],
)
def test_a_token_in_the_query_is_found_by_name_or_shape(query: dict[str, list[bytes]], found: bool) -> None:
    assert token_in_query(query) is found


def test_a_token_users_key_gives_the_frames_user_and_user_id_and_a_name_alone_stays_as_it_was() -> None:
    key = user_key("Ann", "u-1")
    assert user_parts(key) == ("Ann", "u-1") and user_parts("ann") == ("ann", None)
    assert b'"user":"Ann","user_id":"u-1"' in frames.notice("join", key)
    assert frames.notice("join", "ann") == b'{"type":"join","user":"ann"}'
    assert b'"user_id":"u-1"' in frames.message("1-1", "r", key, "hi", 1)


def test_the_key_set_is_fetched_once_for_many_unknown_kids_kept_when_a_fetch_fails_and_read_again_when_old() -> None:
    key = RsaKey("k1")
    answers: list[object] = [{"keys": [key.jwk()]}, OSError("site down"), b"not json", {"keys": []}]
    now = [0.0]

    async def fetch(url: str) -> bytes:
        await asyncio.sleep(0.01)  # a fetch takes a while: everyone asking meanwhile shares it
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()

    async def scenario() -> None:
        cache = JwksCache("http://site/jwks", fetch=fetch, clock=lambda: now[0])
        found = await asyncio.gather(*(cache.key(f"unknown-{k}") for k in range(50)), cache.key("k1"))
        assert found[:50] == [None] * 50 and found[50] is not None and cache.fetches == 1
        assert await cache.key("nope") is None and cache.fetches == 1  # within the minute
        now[0] += 61
        assert await cache.key("nope") is None and cache.fetches == 2  # the site is down ...
        assert await cache.key("k1") is not None  # ... and the set read before stays in use
        now[0] += 61
        assert await cache.key("nope") is None and cache.fetches == 3  # garbage: the same
        assert await cache.key("k1") is not None
        now[0] += MAX_AGE  # old: read again on the next token, and the site now has no keys
        assert await cache.key("k1") is not None and cache.fetches == 4  # an empty set is refused too

    asyncio.run(scenario())
