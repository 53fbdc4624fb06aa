"""Property-based tests (hypothesis) of the edge's pure parsers: frames, ids, names."""

from __future__ import annotations

import unicodedata

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.message import IdKey, id_key
from handlers.inbound import ChatRequest, FrameError, TypingRequest, parse_frame
from handlers.names import MAX_COMBINING_RUN, name_problem, normalise_name, visible_name

U64 = st.integers(min_value=0, max_value=2**64 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
ERROR_CODES = {"bad_json", "bad_request", "message_too_long"}


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_frame_parses_or_is_refused_with_a_contract_code(data: str | bytes) -> None:
    try:
        request = parse_frame(data, 4096)
    except FrameError as error:
        assert error.code in ERROR_CODES
        return
    assert isinstance(request, (ChatRequest, TypingRequest))


@given(st.dictionaries(st.sampled_from(["message", "client_id", "typing", "x"]), json_values, max_size=4))
def test_any_json_object_parses_or_is_refused_with_a_contract_code(body: dict[str, object]) -> None:
    try:
        request = parse_frame(orjson.dumps(body).decode(), 4096)
    except FrameError as error:
        assert error.code in ERROR_CODES
        return
    if isinstance(request, ChatRequest):
        assert request.text and len(request.text) <= 4096
        assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in request.text)


@given(U64, U64)
def test_every_64_bit_id_round_trips(ms: int, seq: int) -> None:
    assert id_key(f"{ms}-{seq}") == IdKey(ms, seq) and str(IdKey(ms, seq)) == f"{ms}-{seq}"


@given(st.text(max_size=45))
def test_any_other_text_is_not_an_id_or_is_a_plain_ascii_one(text: str) -> None:
    try:
        key = id_key(text)
    except ValueError:
        return
    ms, seq = text.split("-")
    assert text.isascii() and ms.isdigit() and seq.isdigit()
    assert (int(ms), int(seq)) == key and key.ms < 2**64 and key.seq < 2**64


@given(st.integers(min_value=2**64, max_value=2**70), U64)
def test_ids_past_64_bits_are_refused(big: int, other: int) -> None:
    for text in (f"{big}-{other}", f"{other}-{big}"):
        with pytest.raises(ValueError):
            id_key(text)


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_normalising_a_name_is_idempotent_and_an_accepted_one_shows_something(raw: str) -> None:
    name = normalise_name(raw)
    assert normalise_name(name) == name
    if name_problem(name) is None:
        assert 0 < len(name) <= 32 and name.isprintable()
        assert any(not c.isspace() and unicodedata.category(c) not in ("Mn", "Me", "Cf") for c in name)
        run = longest = 0
        for char in name:
            run = run + 1 if unicodedata.category(char) in ("Mn", "Me") or unicodedata.combining(char) else 0
            longest = max(longest, run)
        assert longest <= MAX_COMBINING_RUN


@settings(max_examples=300)
@given(
    st.text(alphabet="abcdeiopxyаеіорсухαορ", min_size=1, max_size=12),
    st.text(alphabet="abcdeiopxyаеіорсухαορ", min_size=1, max_size=12),
)
def test_two_different_accepted_names_never_show_the_same(first: str, second: str) -> None:
    a, b = normalise_name(first), normalise_name(second)
    if a != b and name_problem(a) is None and name_problem(b) is None:
        assert visible_name(a) != visible_name(b)
