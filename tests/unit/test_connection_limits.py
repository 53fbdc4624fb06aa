"""handlers/limits.py's ConnectionLimits: slots per process and per address are taken and given back."""

from __future__ import annotations

from handlers.limits import ConnectionLimits


def test_a_released_slot_can_be_taken_again_by_the_same_address() -> None:
    limits = ConnectionLimits(max_connections=10, max_per_client=2)
    assert limits.admit("10.0.0.1") is None and limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") == 429
    assert limits.admit("10.0.0.2") is None  # another address has its own share
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.1") is None
    assert limits.total == 3


def test_the_process_limit_answers_503_until_any_slot_is_given_back() -> None:
    limits = ConnectionLimits(max_connections=2, max_per_client=5)
    assert limits.admit("a") is None and limits.admit("b") is None
    assert limits.admit("c") == 503
    limits.release("a")
    assert limits.admit("c") is None
