"""The API's keys: who may call it, told apart in constant time, named in logs by an id, never by the key.

A presented key is hashed and compared with every configured key's hash
(``hmac.compare_digest``, all of them, whatever matched): the time a refusal
takes says nothing about how close a guess came, nor which key it was near.
Several keys may be configured at once, so one can be rotated out while its
successor is already in use. Each key has its own request budget.
"""

from __future__ import annotations

import hashlib
import hmac

from handlers.rate_limit import TokenBucket

_BEARER = "bearer "


def key_id(key: str) -> str:
    """How logs and metrics name a key: the start of its SHA-256 (a key is long and random; this reveals nothing)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class ApiKeys:
    def __init__(self, keys: tuple[str, ...], rate: float, burst: int) -> None:
        self._hashes = [(hashlib.sha256(key.encode()).digest(), key_id(key)) for key in keys]
        self._budgets = {name: TokenBucket(rate, burst) for _, name in self._hashes}

    def identify(self, authorization: str | None) -> str | None:
        """The id of the key an ``Authorization: Bearer <key>`` header carries, or None."""
        presented = ""
        if authorization is not None and authorization[: len(_BEARER)].lower() == _BEARER:
            presented = authorization[len(_BEARER) :].strip()
        digest = hashlib.sha256(presented.encode(errors="surrogateescape")).digest()
        found: str | None = None
        for known, name in self._hashes:
            if hmac.compare_digest(digest, known) and presented:
                found = name
        return found

    def take(self, key: str) -> bool:
        """Spend one request of the key's budget; False when it is spent."""
        return self._budgets[key].take()
