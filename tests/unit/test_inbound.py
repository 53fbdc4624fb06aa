"""handlers/inbound.py: one client frame in, a request or an error code (docs/protocol.md) out."""

from __future__ import annotations

import json

import pytest

from handlers.inbound import (
    MAX_CLIENT_ID,
    ChatRequest,
    DeleteRequest,
    EditRequest,
    FrameError,
    OlderRequest,
    TypingRequest,
    parse_frame,
)

LIMIT = 10

ACCEPTED = [
    ('{"message": "hi"}', ChatRequest("hi", None)),
    ('{"message": "hi", "client_id": "c-1"}', ChatRequest("hi", "c-1")),
    ('{"message": "hi", "client_id": ""}', ChatRequest("hi", "")),
    ('{"message": "' + "x" * LIMIT + '"}', ChatRequest("x" * LIMIT, None)),
    ('{"message": "' + "😀" * LIMIT + '"}', ChatRequest("😀" * LIMIT, None)),  # code points, not bytes
    ('{"message": "hi", "client_id": "' + "c" * MAX_CLIENT_ID + '"}', ChatRequest("hi", "c" * MAX_CLIENT_ID)),
    ('{"message": "hi", "colour": "red"}', ChatRequest("hi", None)),  # unknown keys are ignored
    ('{"message": "hi", "typing": true}', ChatRequest("hi", None)),  # a message is never mere typing
    ('{"message": "hi", "typing": false}', ChatRequest("hi", None)),
    ('{"typing": true}', TypingRequest()),
    ('{"typing": true, "client_id": "c"}', TypingRequest()),
    (b'{"message": "hi"}'.decode(), ChatRequest("hi", None)),
]


@pytest.mark.parametrize("raw,expected", ACCEPTED)
def test_a_valid_frame_becomes_a_request(raw: str, expected: object) -> None:
    assert parse_frame(raw, LIMIT) == expected


REFUSED = [
    (b'{"message": "hi"}', "bad_request", None),  # a binary frame
    ("not json", "bad_json", None),
    ("", "bad_json", None),
    ('{"message": "hi"', "bad_json", None),
    ("[1, 2]", "bad_request", None),
    ('"text"', "bad_request", None),
    ("null", "bad_request", None),
    ("{}", "bad_request", None),
    ('{"typing": false}', "bad_request", None),
    ('{"typing": 1}', "bad_request", None),
    ('{"message": ""}', "bad_request", None),
    ('{"message": 42}', "bad_request", None),
    ('{"message": null}', "bad_request", None),
    ('{"message": ["hi"]}', "bad_request", None),
    ('{"message": "", "client_id": "c-9"}', "bad_request", "c-9"),
    ('{"message": "' + "x" * (LIMIT + 1) + '"}', "message_too_long", None),
    ('{"message": "' + "x" * (LIMIT + 1) + '", "client_id": "c-2"}', "message_too_long", "c-2"),
    ('{"message": "hi", "client_id": 7}', "bad_request", None),
    ('{"message": "hi", "client_id": null}', "bad_request", None),
    ('{"message": "hi", "client_id": "' + "c" * (MAX_CLIENT_ID + 1) + '"}', "bad_request", None),
    ('{"typing": true, "client_id": 7}', "bad_request", None),
]


@pytest.mark.parametrize("raw,code,client_id", REFUSED)
def test_a_bad_frame_is_refused_with_its_code(raw: str | bytes, code: str, client_id: str | None) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(raw, LIMIT)
    assert refused.value.code == code and refused.value.client_id == client_id
    assert refused.value.detail and str(refused.value) == refused.value.detail


def test_the_error_frame_names_the_code_the_detail_and_the_client_id() -> None:
    error = FrameError("rate_limited", "slow down", "c-3")
    assert json.loads(error.frame()) == {
        "type": "error",
        "error": "rate_limited",
        "detail": "slow down",
        "client_id": "c-3",
    }
    assert json.loads(FrameError("bad_json", "not JSON").frame()) == {
        "type": "error",
        "error": "bad_json",
        "detail": "not JSON",
    }
    assert "client_id" in json.loads(FrameError("bad_request", "d", "").frame())  # an empty id is still an id


@pytest.mark.parametrize(
    "raw,detail",
    [
        (b"{}", "send text frames holding a JSON object"),
        ("{", "the frame is not valid JSON"),
        ("[]", "the frame must be a JSON object"),
        ("{}", '"message" must be a non-empty string'),
        ('{"message": "x", "client_id": 1}', '"client_id" must be a string of at most 64 characters'),
    ],
)
def test_each_refusal_tells_a_person_what_to_send(raw: str | bytes, detail: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(raw, LIMIT)
    assert refused.value.detail == detail


def test_the_too_long_detail_says_the_limit() -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame('{"message": "' + "x" * 4097 + '"}', 4096)
    assert "4096" in refused.value.detail


# ---- older, edit, delete ---------------------------------------------------------

ROOM_REQUESTS = [
    ('{"type": "older", "before": "5-1"}', OlderRequest("5-1", 50)),  # the default page
    ('{"type": "older", "before": "5-1", "limit": 1}', OlderRequest("5-1", 1)),
    ('{"type": "older", "before": "5-1", "limit": 200}', OlderRequest("5-1", 200)),
    ('{"type": "older", "before": "005-01", "limit": 3}', OlderRequest("5-1", 3)),  # the id as the bus writes it
    ('{"type": "edit", "id": "5-1", "message": "fixed\\u200b"}', EditRequest("5-1", "fixed")),  # cleaned like a message
    ('{"type": "edit", "id": "5-1", "message": "' + "x" * LIMIT + '"}', EditRequest("5-1", "x" * LIMIT)),
    ('{"type": "delete", "id": "5-1", "message": "ignored"}', DeleteRequest("5-1")),
    ('{"type": "chat", "message": "hi"}', ChatRequest("hi", None)),  # another type: a message as before
]


@pytest.mark.parametrize("raw,expected", ROOM_REQUESTS)
def test_older_edit_and_delete_frames_become_requests(raw: str, expected: object) -> None:
    assert parse_frame(raw, LIMIT) == expected


ROOM_REFUSALS = [
    ('{"type": "older"}', "bad_request"),
    ('{"type": "older", "before": null}', "bad_request"),
    ('{"type": "older", "before": "5"}', "bad_request"),
    ('{"type": "older", "before": "5-1 "}', "bad_request"),
    ('{"type": "older", "before": "١-١"}', "bad_request"),  # Arabic-Indic digits
    ('{"type": "older", "before": "5-1", "limit": 0}', "bad_request"),
    ('{"type": "older", "before": "5-1", "limit": 201}', "bad_request"),
    ('{"type": "older", "before": "5-1", "limit": 2.5}', "bad_request"),
    ('{"type": "older", "before": "5-1", "limit": false}', "bad_request"),
    ('{"type": "edit", "id": "5-1"}', "bad_request"),
    ('{"type": "edit", "id": "5-1", "message": ""}', "bad_request"),
    ('{"type": "edit", "id": "5-1", "message": "\\u200b"}', "bad_request"),  # nothing visible
    ('{"type": "edit", "id": "5-1", "message": "' + "x" * (LIMIT + 1) + '"}', "message_too_long"),
    ('{"type": "edit", "message": "x"}', "bad_request"),
    ('{"type": "delete"}', "bad_request"),
    ('{"type": "delete", "id": ["5-1"]}', "bad_request"),
    ('{"type": "delete", "id": "' + "9" * 30 + '-0"}', "bad_request"),  # past 64 bits
]


@pytest.mark.parametrize("raw,code", ROOM_REFUSALS)
def test_malformed_older_edit_and_delete_frames_are_refused(raw: str, code: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(raw, LIMIT)
    assert refused.value.code == code
