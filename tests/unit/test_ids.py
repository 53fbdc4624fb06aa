"""bus/message.py: ids, their order, frames, and whether a replay is complete (pure)."""

from __future__ import annotations

import json

import pytest

from bus.message import ZERO_ID, Draft, IdKey, Message, Notice, completeness, id_key


@pytest.mark.parametrize(
    "raw,key",
    [
        ("0-0", (0, 0)),
        ("1-2", (1, 2)),
        ("1700000000000-15", (1700000000000, 15)),
        ("007-01", (7, 1)),
        (f"{2**64 - 1}-{2**64 - 1}", (2**64 - 1, 2**64 - 1)),  # the largest stream id
    ],
)
def test_an_id_is_two_numbers(raw: str, key: tuple[int, int]) -> None:
    assert id_key(raw) == key and id_key(raw) == IdKey(*key)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-",
        "1",
        "1-",
        "-1",
        "a-1",
        "1-b",
        "1-2-3",
        "1.5-2",
        " 1-2",
        "1-2 ",
        "+1-2",
        "1--2",
        "1" * 21 + "-" + "2" * 20,  # 42 characters: longer than any stream id
        f"{2**64}-0",  # past 64 bits
        f"0-{2**64}",
        "\u0661-\u0662",  # Arabic-Indic digits are digits to str.isdigit, not to Redis
    ],
)
def test_anything_else_is_not_an_id(raw: str) -> None:
    with pytest.raises(ValueError) as refused:
        id_key(raw)
    assert repr(raw) in str(refused.value)


def test_ids_order_as_numbers_not_as_strings() -> None:
    assert id_key("9-0") < id_key("10-0") and "9-0" > "10-0"
    assert id_key("5-9") < id_key("5-10") < id_key("6-0")
    assert str(IdKey(12, 3)) == "12-3" and str(id_key(ZERO_ID)) == ZERO_ID


def test_a_message_frame_carries_the_contract_fields_and_ts_is_the_ids_milliseconds() -> None:
    message = Draft("room", "ann", "hé <b>", "c-1").stored_as("1700000000123-4")
    assert message.ts == 1700000000123 and message.key == (1700000000123, 4)
    assert json.loads(message.frame()) == {
        "type": "message",
        "id": "1700000000123-4",
        "room": "room",
        "user": "ann",
        "message": "hé <b>",
        "ts": 1700000000123,
    }
    assert json.loads(message.frame(replay=True))["replay"] is True
    assert message.client_id == "c-1"


def test_a_message_with_a_bad_id_cannot_exist() -> None:
    with pytest.raises(ValueError):
        Message("nope", "room", "ann", "text")


def test_notice_frames() -> None:
    assert json.loads(Notice("r", "join", "ann").frame()) == {"type": "join", "user": "ann"}
    assert json.loads(Notice("r", "typing", "bob").frame()) == {"type": "typing", "user": "bob"}
    presence = Notice.presence("r", {"zoe": 1, "ann": 2})
    assert presence.members == (("ann", 2), ("zoe", 1))  # sorted by user
    assert json.loads(presence.frame()) == {
        "type": "presence",
        "members": [{"user": "ann", "connections": 2}, {"user": "zoe", "connections": 1}],
    }


# ---- completeness ----------------------------------------------------------------

K = IdKey
NONE_DELETED = K(0, 0)

COMPLETENESS = [
    # since,   born,    max_deleted, retained, replayed, complete
    (None, None, NONE_DELETED, 0, 0, True),  # an empty room: nothing to miss
    (None, K(5, 0), NONE_DELETED, 3, 3, True),  # the whole history replayed
    (None, K(5, 0), NONE_DELETED, 3, 2, False),  # history limit cut the oldest
    (None, K(5, 0), K(4, 0), 3, 3, False),  # trimming removed older ones
    (K(9, 0), None, NONE_DELETED, 0, 0, False),  # an id from a room this bus never had: lost
    (K(5, 0), K(5, 0), NONE_DELETED, 3, 2, True),  # since the first message
    (K(6, 0), K(5, 0), NONE_DELETED, 3, 1, True),
    (K(4, 9), K(5, 0), NONE_DELETED, 3, 3, False),  # older than the epoch: a history was lost
    (K(5, 0), K(1, 0), K(5, 0), 3, 3, True),  # since is exactly the newest trimmed: nothing missing
    (K(4, 9), K(1, 0), K(5, 0), 3, 3, False),  # trimmed past since
    (K(5, 1), K(1, 0), K(5, 0), 3, 3, True),
    (K(99, 0), K(1, 0), K(5, 0), 3, 0, True),  # newer than everything retained
]


@pytest.mark.parametrize("since,born,max_deleted,retained,replayed,complete", COMPLETENESS)
def test_completeness(
    since: IdKey | None, born: IdKey | None, max_deleted: IdKey, retained: int, replayed: int, complete: bool
) -> None:
    assert completeness(since, born=born, max_deleted=max_deleted, retained=retained, replayed=replayed) is complete


def test_a_long_bad_id_is_quoted_only_in_part() -> None:
    with pytest.raises(ValueError) as refused:
        id_key("9" * 80)
    assert str(refused.value) == f"not a message id: {'9' * 50!r}"
