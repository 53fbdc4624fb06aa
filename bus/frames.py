"""Every frame the server sends (docs/protocol.md lists them), as UTF-8 JSON bytes: pure, no I/O.

The hub encodes a message or notice frame once and hands the same bytes to
every member; the handler builds a connection's own frames (ready, ack,
error) here too, so the wire format lives in one place.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from bus.user_key import TOKEN_USER, user_fields

_EMPTY = b""


def _dumps(body: Any) -> bytes:
    """``orjson.dumps`` in a right-sized copy.

    orjson 3.12+ returns bytes whose allocation is at least 4 KiB, however
    short the JSON. A frame kept a while (a notice buffered in every seat
    still joining, a write waiting in a stream) held 4 KiB, and a burst of
    joins left the C heap grown and fragmented by them, costing memory on
    every idle connection; the copy costs far less than that saves
    (bench/RESULTS.md, "Measurements formerly in code comments").
    """
    return _EMPTY.join((orjson.dumps(body), _EMPTY))


def message(
    message_id: str, room: str, user: str, text: str, ts: int, replay: bool = False, edited_ts: int = 0
) -> bytes:
    body: dict[str, Any] = {"type": "message", "id": message_id, "room": room, "user": user, "message": text, "ts": ts}
    if user[:1] == TOKEN_USER:  # a token's user: ``user`` is its name, ``user_id`` its sub
        body.update(user_fields(user))
    if replay:
        body["replay"] = True
    if edited_ts:
        body["edited"] = True
        body["edited_ts"] = edited_ts
    return _dumps(body)


def edited(message_id: str, text: str, edited_ts: int) -> bytes:
    return _dumps({"type": "edited", "id": message_id, "message": text, "edited_ts": edited_ts})


def deleted(message_id: str) -> bytes:
    return _dumps({"type": "deleted", "id": message_id})


def older(before: str, messages: Iterable[bytes], complete: bool) -> bytes:
    """The answer to an ``older`` request, around ``messages``: message frames already encoded, oldest first."""
    head = _dumps({"type": "older", "before": before})[:-1]  # without its closing brace
    tail = b"true}" if complete else b"false}"
    return b"".join((head, b',"messages":[', b",".join(messages), b'],"complete":', tail))


def ready(room: str, user: str, last_id: str | None, complete: bool) -> bytes:
    body = {"type": "ready", "room": room, "user": user, "last_id": last_id, "complete": complete}
    if user[:1] == TOKEN_USER:
        body.update(user_fields(user))
    return _dumps(body)


def ack(client_id: str, message_id: str) -> bytes:
    return _dumps({"type": "ack", "client_id": client_id, "id": message_id})


def refreshed(exp: float) -> bytes:
    """Token mode: the connection's token was replaced and now ends at ``exp`` (seconds since the epoch)."""
    return _dumps({"type": "refreshed", "exp": int(exp)})


def error(code: str, detail: str, client_id: str | None = None) -> bytes:
    body = {"type": "error", "error": code, "detail": detail}
    if client_id is not None:
        body["client_id"] = client_id
    return _dumps(body)


def presence(members: Iterable[tuple[str, int]]) -> bytes:
    listed = [
        {"user": user, "connections": count} if user[:1] != TOKEN_USER else {**user_fields(user), "connections": count}
        for user, count in members
    ]
    return _dumps({"type": "presence", "members": listed})


def notice(kind: str, user: str) -> bytes:
    """``join``, ``leave`` or ``typing``, about ``user``."""
    if user[:1] != TOKEN_USER:
        return _dumps({"type": kind, "user": user})
    return _dumps({"type": kind, **user_fields(user)})
