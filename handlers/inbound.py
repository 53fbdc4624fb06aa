"""Client frames, parsed and validated at the edge (pure, no I/O).

``parse_frame`` turns one WebSocket frame into a ``ChatRequest``, a
``TypingRequest``, or (a frame whose ``type`` is ``older``, ``edit`` or
``delete``) an ``OlderRequest``, ``EditRequest`` or ``DeleteRequest``, or
raises ``FrameError`` carrying an error code (docs/protocol.md, "Errors"), so the handler
never sees unvalidated input.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bus import frames
from bus.message import id_key

MAX_CLIENT_ID = 64
OLDER_DEFAULT = 50  # messages in an older page unless the client asks for another number
OLDER_MAX = 200

# Removed from message text: C0/C1 controls other than newline and tab, the
# bidi embeddings, overrides and isolates (which reorder whatever follows,
# the author shown included), and zero-width spaces. The zero-width joiner
# and non-joiner stay: emoji sequences and Persian script need them.
_INVISIBLE = {code: None for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))} | {
    code: None
    for code in (0x061C, 0x200B, 0x200E, 0x200F, *range(0x202A, 0x202F), 0x2060, *range(0x2066, 0x206A), 0xFEFF)
}
del _INVISIBLE[0x0A], _INVISIBLE[0x09]


class FrameError(Exception):
    """A frame the server refuses: ``code`` is the ``error`` frame's code (docs/protocol.md, "Errors")."""

    def __init__(self, code: str, detail: str, client_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.client_id = client_id

    def frame(self) -> bytes:
        """The ``error`` frame (with the rejected message's client_id, if it had one)."""
        return frames.error(self.code, self.detail, self.client_id)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    text: str
    client_id: str | None


@dataclass(frozen=True, slots=True)
class TypingRequest:
    pass


@dataclass(frozen=True, slots=True)
class OlderRequest:
    before: str
    limit: int


@dataclass(frozen=True, slots=True)
class EditRequest:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    id: str


RoomRequest = OlderRequest | EditRequest | DeleteRequest


def parse_frame(data: str | bytes, max_chars: int) -> ChatRequest | TypingRequest | RoomRequest:
    if isinstance(data, bytes):
        raise FrameError("bad_request", "send text frames holding a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise FrameError("bad_json", "the frame is not valid JSON") from None
    if not isinstance(body, dict):
        raise FrameError("bad_request", "the frame must be a JSON object")
    client_id = _client_id(body)
    kind = body.get("type")
    if kind == "older":
        return OlderRequest(_message_id(body, "before"), _limit(body))
    if kind == "edit":
        return EditRequest(_message_id(body, "id"), _text(body, max_chars, None))
    if kind == "delete":
        return DeleteRequest(_message_id(body, "id"))
    if "message" not in body and body.get("typing") is True:
        return TypingRequest()
    return ChatRequest(_text(body, max_chars, client_id), client_id)


def message_text(text: object, max_chars: int) -> str:
    """A message's text as a member's would be checked and cleaned (the server API's too); FrameError otherwise."""
    return _text({"message": text}, max_chars, None)


def _text(body: dict[str, object], max_chars: int, client_id: str | None) -> str:
    text = body.get("message")
    if not isinstance(text, str) or not text:
        raise FrameError("bad_request", '"message" must be a non-empty string', client_id)
    if len(text) > max_chars:  # checked before the clean-up, which costs a pass over the text
        raise FrameError("message_too_long", f"a message holds at most {max_chars} characters", client_id)
    text = text.translate(_INVISIBLE)
    if not text:
        raise FrameError("bad_request", '"message" must hold visible text', client_id)
    return text


def _message_id(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if isinstance(value, str):
        try:
            return str(id_key(value))
        except ValueError:
            pass
    raise FrameError("bad_request", f'"{name}" must be a message id ("<ms>-<seq>")')


def _limit(body: dict[str, object]) -> int:
    limit = body.get("limit", OLDER_DEFAULT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= OLDER_MAX:
        raise FrameError("bad_request", f'"limit" must be a whole number from 1 to {OLDER_MAX}')
    return limit


def _client_id(body: dict[str, object]) -> str | None:
    if "client_id" not in body:
        return None
    client_id = body["client_id"]
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID:
        raise FrameError("bad_request", f'"client_id" must be a string of at most {MAX_CLIENT_ID} characters')
    return client_id
