"""Who a request is, and which names are valid: room names and display names."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

from tornado.web import RequestHandler

from bus.user_key import TOKEN_USER, user_key
from handlers.lookalikes import latin_reading, strip_ignorable
from handlers.names import name_problem, normalise_name, visible_name

USER_COOKIE = "chat_user"
USER_COOKIE_DAYS = 365  # how long the name cookie lives, and how old a signed one may be
_ROOM_NAME = re.compile(r"\w{1,100}")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is: a display name, and in token mode the user id (the token's ``sub``).

    The user is the user id when there is one (presence, rate limits, later
    bans), else the name. ``key`` is how the bus knows the user.
    """

    name: str
    user_id: str | None = None

    @property
    def key(self) -> str:
        return user_key(self.name, self.user_id)

    @property
    def charged_as(self) -> str:
        """The user as its budgets know it: the user id when there is one, never the name then."""
        return self.name if self.user_id is None else TOKEN_USER + self.user_id

    def budgets(self, client: str) -> tuple[str, str]:
        """The keys of the rate budgets a frame is charged to: the user's in a room, and over all connections.

        Without a user id the second is the client's address; with one, the
        user's (people behind one office NAT do not share one budget).
        """
        return self.charged_as, client if self.user_id is None else self.charged_as


def is_room_name(name: str) -> bool:
    """1 to 100 Unicode word characters (Python's ``\\w``), and not a look-alike of another room's name."""
    return _ROOM_NAME.fullmatch(name) is not None and room_lookalike(name) is None


def room_lookalike(name: str) -> str | None:
    """The room ``name`` passes for without being it, or None: such a name is refused, never a room of its own.

    Default-ignorable fillers (``lobby`` + U+3164) and compatibility forms
    (full-width ``ｌｏｂｂｙ``) are dropped or folded; Latin letters mixed with
    characters that read as Latin ones (``lоbby`` with a Cyrillic о,
    ``admın``) are read as Unicode's confusables data has them. A name
    written wholly in another script (``оса``, a Russian word) is a room of
    its own. See README, "Room names".
    """
    plain = unicodedata.normalize("NFKC", strip_ignorable(name))
    if any(char.isascii() and char.isalpha() for char in plain):
        plain = latin_reading(plain) or plain
    return None if plain == name else plain


def is_user_name(name: str) -> bool:
    """A name that, once normalised, is 1 to 32 printable characters showing something (handlers/names.py)."""
    return name_problem(normalise_name(name)) is None


def guest_name() -> str:
    return "guest-" + secrets.token_hex(3)


def cookie_user(handler: RequestHandler) -> str | None:
    """The visible display name from the signed cookie, or None when absent, forged, expired or invalid."""
    raw = handler.get_signed_cookie(USER_COOKIE, max_age_days=USER_COOKIE_DAYS)
    if raw is None:
        return None
    try:
        name = normalise_name(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return visible_name(name) if name_problem(name) is None else None


def remember_user(handler: RequestHandler, name: str) -> None:
    """Keep the normalised name in the signed cookie; the caller checked it with ``is_user_name``."""
    handler.set_signed_cookie(
        USER_COOKIE,
        normalise_name(name),
        httponly=True,
        samesite="Lax",
        secure=handler.request.protocol == "https",
        expires_days=USER_COOKIE_DAYS,
    )
