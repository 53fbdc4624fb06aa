"""Names and room names that pass for others, decided by Unicode's data (handlers/lookalikes.py).

The strings are the hostile-client audit's: each rendered as ``admin`` or
``lobby`` in Chromium, yet was a name or room of its own, untagged.
"""

from __future__ import annotations

import pytest

from handlers.identity import is_room_name, room_lookalike
from handlers.lookalikes import is_ignorable, skeleton
from handlers.names import name_problem, normalise_name, visible_name
from handlers.pages import suggest_room

INVISIBLE_TAILS = ["\ufe00", "\u180b", "\u180f", "\U000e0100", "\U000e0041"]


@pytest.mark.parametrize("tail", INVISIBLE_TAILS)
def test_default_ignorable_code_points_are_stripped_from_names(tail: str) -> None:
    assert normalise_name("admin" + tail) == "admin"
    assert normalise_name("ad" + tail + "min") == "admin"


@pytest.mark.parametrize("code", [0xFE00, 0xFE0F, 0xE0100, 0xE01EF, 0x180B, 0x180F, 0xE0000, 0xE007F, 0x3164, 0x115F])
def test_the_unicode_property_covers_the_audit_code_points(code: int) -> None:
    assert is_ignorable(chr(code))


@pytest.mark.parametrize("name", ["аԁmin", "admın", "ɑdmin", "ᴀdmin", "ᎪDMIN", "adrnin", "аdmin日"])
def test_names_that_pass_for_a_latin_or_staff_name_are_tagged(name: str) -> None:
    assert name_problem(name) is None
    assert visible_name(name).startswith(name + "#")


@pytest.mark.parametrize("name", ["admin", "ADMIN", "Zoë", "café", "日本語", "Сергей", "guest-4f1c2a"])
def test_plain_names_are_shown_as_they_are(name: str) -> None:
    assert visible_name(name) == name


def test_skeletons_are_unicodes_confusable_mapping() -> None:
    assert skeleton("lоbby") == skeleton("lobby")  # Cyrillic о
    assert skeleton("аԁmin") == skeleton("admin") == skeleton("adrnin")
    assert skeleton("café") != skeleton("cafe")


@pytest.mark.parametrize(
    "room,lookalike",
    [
        ("lobby\u3164", "lobby"),
        ("lobby\u115f", "lobby"),
        ("lоbby", "lobby"),  # Cyrillic о
        ("ｌｏｂｂｙ", "lobby"),
        ("admın", "admin"),
    ],
)
def test_rooms_that_look_like_another_are_refused_and_name_it(room: str, lookalike: str) -> None:
    assert room_lookalike(room) == lookalike
    assert not is_room_name(room)
    assert suggest_room(f"/chat/{room}/") == lookalike


@pytest.mark.parametrize("room", ["\u3164", "\u115f"])
def test_rooms_of_fillers_alone_are_refused(room: str) -> None:
    assert not is_room_name(room)


@pytest.mark.parametrize("room", ["lobby", "café", "日本語", "оса", "Room_42"])
def test_rooms_of_one_script_are_rooms_of_their_own(room: str) -> None:
    assert is_room_name(room) and room_lookalike(room) is None


def test_the_server_api_refuses_a_lookalike_room_naming_the_room() -> None:
    from api.base import ApiError
    from api.inputs import room

    with pytest.raises(ApiError) as refused:
        room("lоbby")
    assert refused.value.status_code == 400 and refused.value.code == "bad_room"
    assert "looks like the room 'lobby'" in refused.value.detail
