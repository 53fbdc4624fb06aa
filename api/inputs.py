"""The API's inputs, checked at the edge: room names, users, ids, limits, durations (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from api.base import ApiError
from bus.message import IdKey, id_key
from bus.moderation import MAX_SECONDS
from handlers.identity import is_room_name, room_lookalike
from handlers.inbound import MAX_CLIENT_ID, FrameError, message_text
from handlers.names import name_problem, normalise_name, visible_name

MAX_USER_ID = 128  # as a token's sub


def room(name: str) -> str:
    """A room name as the WebSocket takes it (1 to 100 word characters); 400 otherwise."""
    if not is_room_name(name):
        lookalike = room_lookalike(name)
        if lookalike and is_room_name(lookalike):
            raise ApiError(400, "bad_room", f"{name!r} looks like the room {lookalike!r}: not a room of its own")
        raise ApiError(400, "bad_room", "a room name is 1 to 100 letters, digits or underscores")
    return name


def display_name(value: Any, field: str = "user") -> str:
    """A display name under the lobby's rules, normalised as the lobby would; 400 otherwise."""
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f'"{field}" must be a string')
    name = normalise_name(value)
    problem = name_problem(name)
    if problem is not None:
        raise ApiError(400, "bad_user", f'"{field}": {problem}')
    return visible_name(name)


def user_id(value: Any, field: str = "user_id") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_USER_ID or not value.isprintable():
        raise ApiError(400, "bad_user", f'"{field}" must be 1 to {MAX_USER_ID} printable characters')
    return value


def moderated_user(value: Any, token_mode: bool, field: str = "user") -> str:
    """Who a ban or mute is for: a user id in token mode, else a display name."""
    return user_id(value, field) if token_mode else display_name(value, field)


def text(value: Any, max_chars: int) -> str:
    try:
        return message_text(value, max_chars)
    except FrameError as error:
        detail = error.detail.replace('"message"', '"text"')
        raise ApiError(400, error.code, detail) from None


def idempotency_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID:
        raise ApiError(400, "bad_request", f'"idempotency_key" must be a string of 1 to {MAX_CLIENT_ID} characters')
    return value


def message_id(value: str | None, field: str) -> IdKey | None:
    return None if value is None else required_id(value, field)


def required_id(value: str, field: str) -> IdKey:
    try:
        return id_key(value)
    except ValueError:
        raise ApiError(400, "bad_request", f'"{field}" must be a message id ("<ms>-<seq>")') from None


def count(value: str | None, field: str, default: int, most: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= most:
        raise ApiError(400, "bad_request", f'"{field}" must be a whole number from 1 to {most}')
    return int(value)


def seconds(value: Any, field: str, required: bool) -> int | None:
    """A sanction's length in whole seconds, 1 to MAX_SECONDS; None when absent and allowed to be."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_SECONDS:
        raise ApiError(400, "bad_request", f'"{field}" must be a number of seconds from 1 to {MAX_SECONDS}')
    return int(value)
