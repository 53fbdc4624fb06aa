"""How the bus keys a user: the display name alone, or a user id and the name (pure, no I/O).

The bus knows a user by one string: it counts presence by it, keeps a
message's author as it, and charges resends to it. Without tokens that
string is the display name, as always. With tokens the user is the token's
``sub``, shown under its ``name``: the key then holds both, behind control
characters that neither a valid name nor a valid ``sub`` may contain, so
the frames can give ``user`` and ``user_id`` apart while the stores (memory,
Redis streams and hashes) keep one opaque string as before.
"""

from __future__ import annotations

TOKEN_USER = "\x1e"  # starts the key of a user known by a token
_SEPARATOR = "\x1f"  # between the user id and the name


def user_key(name: str, user_id: str | None = None) -> str:
    """The bus's key for a user: ``name`` alone, or the user id and the name."""
    if user_id is None:
        return name
    return f"{TOKEN_USER}{user_id}{_SEPARATOR}{name}"


def user_parts(key: str) -> tuple[str, str | None]:
    """``(name, user_id)`` of a key; the user id is None for a name alone."""
    if key[:1] != TOKEN_USER:
        return key, None
    user_id, _, name = key[1:].partition(_SEPARATOR)
    return name, user_id


def user_fields(key: str) -> dict[str, str]:
    """The ``user`` (and, for a token's user, ``user_id``) fields of a frame about this user."""
    name, user_id = user_parts(key)
    if user_id is None:
        return {"user": name}
    return {"user": name, "user_id": user_id}
