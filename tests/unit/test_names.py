"""handlers/identity.py: which room names and display names are valid.

Only what stays true while the rules are being tightened: plainly valid names
pass; empty, too long, control characters and separators fail.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from handlers.identity import USER_COOKIE, cookie_user, guest_name, is_room_name, is_user_name, remember_user


@pytest.mark.parametrize("name", ["lobby", "café", "日本語", "_9", "a", "x" * 100, "Room_42"])
def test_valid_room_names(name: str) -> None:
    assert is_room_name(name)


@pytest.mark.parametrize(
    "name", ["", "x" * 101, "a b", "a.b", "a/b", "a-b", "a\nb", "lobby\n", "\tlobby", "a\x00b", "a%2Fb", "<b>", "a?b"]
)
def test_bad_room_names(name: str) -> None:
    assert not is_room_name(name)


@pytest.mark.parametrize("name", ["ann", "Zoë <b>", "a", "x" * 32, "Ann Lee", "日本"])
def test_valid_user_names(name: str) -> None:
    assert is_user_name(name)


@pytest.mark.parametrize(
    "name", ["", " ", "   ", "x" * 33, "tab\there", "line\nbreak", "nul\x00", "bell\x07", "del\x7f", "\u2028"]
)
def test_bad_user_names(name: str) -> None:
    assert not is_user_name(name)


def test_guest_names_are_valid_and_differ() -> None:
    names = {guest_name() for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"guest-[0-9a-f]{6}", name) and is_user_name(name)


class Handler:
    """What cookie_user and remember_user use of a Tornado handler: its signed cookie and request."""

    def __init__(self, cookie: bytes | None = None, protocol: str = "http") -> None:
        self.cookie = cookie
        self.asked: list[str] = []
        self.set: list[tuple[str, str, dict[str, object]]] = []
        self.request = SimpleNamespace(protocol=protocol)

    def get_signed_cookie(self, name: str, max_age_days: float = 31) -> bytes | None:
        self.asked.append(name)
        self.max_age_days = max_age_days
        return self.cookie

    def set_signed_cookie(self, name: str, value: str, **options: object) -> None:
        self.set.append((name, value, options))


@pytest.mark.parametrize(
    "cookie,user",
    [
        (None, None),  # absent, or its signature did not verify
        ("Zoë".encode(), "Zoë"),
        (b"\xff\xfe", None),  # not UTF-8
        (b"", None),
        (b"tab\there", None),  # signed once, but not a valid name (now)
        (b"x" * 33, None),
    ],
)
def test_the_name_comes_from_the_signed_cookie_when_valid(cookie: bytes | None, user: str | None) -> None:
    handler = Handler(cookie)
    assert cookie_user(handler) == user  # type: ignore[arg-type]
    assert handler.asked == [USER_COOKIE]


@pytest.mark.parametrize("protocol,secure", [("http", False), ("https", True)])
def test_the_name_cookie_is_signed_http_only_lax_and_secure_over_https(protocol: str, secure: bool) -> None:
    handler = Handler(protocol=protocol)
    remember_user(handler, "ann")  # type: ignore[arg-type]
    assert handler.set == [
        (USER_COOKIE, "ann", {"httponly": True, "samesite": "Lax", "secure": secure, "expires_days": 365})
    ]
