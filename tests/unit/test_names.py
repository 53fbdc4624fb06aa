"""handlers/identity.py: which room names and display names are valid.

Only what stays true while the rules are being tightened: plainly valid names
pass; empty, too long, control characters and separators fail.
"""

from __future__ import annotations

import re

import pytest

from handlers.identity import guest_name, is_room_name, is_user_name


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
