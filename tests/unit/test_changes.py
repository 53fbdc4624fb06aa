"""bus/changes.py: what edits and deletions in a room's log mean for a reader (pure)."""

from __future__ import annotations

import pytest

from bus.backend import ChangeRefused
from bus.changes import fold, older, tail, target_of
from bus.message import Change, ChangeDraft, Entry, Message, id_key


def msg(n: int, text: str = "", user: str = "ann") -> Message:
    return Message(f"{n}-0", "r", user, text or f"m{n}")


def edit(n: int, target: int, text: str) -> Change:
    return Change(f"{n}-0", "r", "ann", "edit", f"{target}-0", text)


def delete(n: int, target: int) -> Change:
    return Change(f"{n}-0", "r", "ann", "delete", f"{target}-0")


def shown(entries: list[Entry]) -> list[tuple[str, str, int]]:
    return [(e.id, e.text, e.edited_ts) if isinstance(e, Message) else (e.kind, e.target, 0) for e in entries]


LOG: list[Entry] = [
    msg(1),
    msg(2),
    msg(3),
    edit(4, 1, "m1 again"),
    delete(5, 2),
    msg(6),
    edit(7, 6, "m6!"),
    edit(8, 1, "m1 last"),
]


def test_fold_shows_messages_as_they_are_now() -> None:
    assert shown(fold(LOG, None)) == [("1-0", "m1 last", 8), ("3-0", "m3", 0), ("6-0", "m6!", 7)]


def test_fold_keeps_changes_of_what_the_reader_has_in_their_places() -> None:
    after_3 = [e for e in LOG if e.key > id_key("3-0")]
    assert shown(fold(after_3, id_key("3-0"))) == [
        ("edit", "1-0", 0),
        ("delete", "2-0", 0),
        ("6-0", "m6!", 7),  # after since: as it is now, its edit not an event
        ("edit", "1-0", 0),
    ]


def test_tail_counts_only_messages_still_shown() -> None:
    page, complete = tail(reversed(LOG), 2)
    assert shown(fold(page, None)) == [("3-0", "m3", 0), ("6-0", "m6!", 7)] and complete is False
    page, complete = tail(reversed(LOG), 3)
    assert [e.id for e in fold(page, None)] == ["1-0", "3-0", "6-0"] and complete is True
    assert tail(reversed(LOG), 0) == ([edit(8, 1, "m1 last"), edit(7, 6, "m6!")][::-1], False)


def test_older_applies_changes_made_after_the_page() -> None:
    page = older(LOG, id_key("6-0"), 1)
    assert shown(list(page.messages)) == [("3-0", "m3", 0)] and page.complete is False
    page = older(LOG, id_key("6-0"), 5)
    assert shown(list(page.messages)) == [("1-0", "m1 last", 8), ("3-0", "m3", 0)] and page.complete is True
    assert older(LOG, id_key("1-0"), 5).messages == [] and older(LOG, id_key("1-0"), 5).complete is True


@pytest.mark.parametrize(
    "draft,code",
    [
        (ChangeDraft("r", "ann", "edit", "9-0", "x", author="ann"), "not_found"),  # no such message
        (ChangeDraft("r", "ann", "edit", "4-0", "x", author="ann"), "not_found"),  # a change, not a message
        (ChangeDraft("r", "ann", "edit", "2-0", "x", author="ann"), "not_found"),  # deleted
        (ChangeDraft("r", "bob", "delete", "3-0", author="bob"), "not_allowed"),  # not his
        (ChangeDraft("r", "ann", "edit", "3-0", "x", author="ann", window=1.0), "not_allowed"),  # too late
    ],
)
def test_a_change_that_may_not_be_made_is_refused(draft: ChangeDraft, code: str) -> None:
    with pytest.raises(ChangeRefused) as refused:
        target_of(LOG, draft, now_ms=10_000)
    assert refused.value.code == code


def test_a_change_that_may_be_made_finds_its_message() -> None:
    assert target_of(LOG, ChangeDraft("r", "ann", "edit", "3-0", "x", author="ann", window=20.0), 10_000) == msg(3)
    assert target_of(LOG, ChangeDraft("r", "system", "delete", "6-0"), 10_000) == msg(6)  # the host: anyone's
