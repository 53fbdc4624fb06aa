"""Who a request is, and which names are valid: room names and display names."""

from __future__ import annotations

import re
import secrets

from tornado.web import RequestHandler

USER_COOKIE = "chat_user"
MAX_USER_NAME = 32
_ROOM_NAME = re.compile(r"\w{1,100}")


def is_room_name(name: str) -> bool:
    """1 to 100 Unicode word characters (Python's ``\\w``), nothing else."""
    return _ROOM_NAME.fullmatch(name) is not None


def is_user_name(name: str) -> bool:
    """1 to 32 printable characters, not only blanks."""
    return 0 < len(name) <= MAX_USER_NAME and name.isprintable() and not name.isspace()


def guest_name() -> str:
    return "guest-" + secrets.token_hex(3)


def cookie_user(handler: RequestHandler) -> str | None:
    """The display name from the signed cookie, or None when absent or forged."""
    raw = handler.get_signed_cookie(USER_COOKIE)
    if raw is None:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if is_user_name(name) else None


def remember_user(handler: RequestHandler, name: str) -> None:
    handler.set_signed_cookie(
        USER_COOKIE, name, httponly=True, samesite="Lax",
        secure=handler.request.protocol == "https", expires_days=365,
    )
