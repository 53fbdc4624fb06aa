"""What RFC 6455 asks of a server reading a client's frames beyond cutting them: codes, closes, UTF-8.

Each violation raises ``Refused`` with the close code the RFC names: 1002
for a frame a client must not send (RFC 6455 section 7.4.1), 1007 for text that is
not UTF-8 (RFC 6455 section 8.1), 1009 for a message over the size limit. The reader
closes with that code, then ends the TCP connection (RFC 6455 section 7.1.7: a peer
that broke the protocol is not waited for).
"""

from __future__ import annotations

import codecs

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009

# Opcodes a client may send (RFC 6455 section 5.2): continuation, text, binary, close, ping, pong.
KNOWN_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8

# Codes a peer may put in a close frame (RFC 6455 section 7.4): those defined for it
# (1004, 1005, 1006 and 1015 are reserved, never sent; the rest of 1000-2999
# unassigned), and 3000-4999 for libraries and applications.
_SENDABLE_DEFINED = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class Refused(Exception):
    """A frame the server closes the connection for, with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def sendable_close_code(code: int) -> bool:
    """Whether a client may send ``code`` in a close frame."""
    return code in _SENDABLE_DEFINED or 3000 <= code <= 4999


def check_close(payload: bytes) -> None:
    """A client's close frame: empty, or a sendable code and a UTF-8 reason (RFC 6455 section 5.5.1)."""
    if not payload:
        return
    if len(payload) == 1:
        raise Refused(CLOSE_PROTOCOL_ERROR, "a close payload of one byte")
    if not sendable_close_code(int.from_bytes(payload[:2], "big")):
        raise Refused(CLOSE_PROTOCOL_ERROR, "a close code a client may not send")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(CLOSE_INVALID_DATA, "a close reason that is not UTF-8") from None


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class TextCheck:
    """The UTF-8 of a connection's text messages, a fragmented one checked as each fragment arrives.

    One per connection; it holds a decoder only while a fragmented text
    message is being read.
    """

    __slots__ = ("decoder",)

    def __init__(self) -> None:
        self.decoder: codecs.IncrementalDecoder | None = None

    def whole(self, payload: bytes) -> None:
        """A text message in one frame (most): ASCII needs no decoding."""
        if not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(CLOSE_INVALID_DATA, "text that is not UTF-8") from None

    def first(self, opcode: int, payload: bytes) -> None:
        """The first fragment of a message: text is checked from here on, binary is not."""
        self.decoder = _utf8_decoder() if opcode == TEXT else None
        self.more(payload, final=False)

    def more(self, payload: bytes, *, final: bool) -> None:
        """A continuation: refused as soon as what arrived cannot begin any UTF-8 text."""
        decoder = self.decoder
        if decoder is None:
            return
        try:
            decoder.decode(payload, final)
        except UnicodeDecodeError:
            self.decoder = None
            raise Refused(CLOSE_INVALID_DATA, "text that is not UTF-8") from None
        if final:
            self.decoder = None
