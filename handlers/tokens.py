"""Token mode's verification: a JWT from the host site becomes a Grant (who, until when, which rooms).

Signatures, ``exp``, ``nbf``, ``aud`` and ``iss`` are checked by PyJWT, with
the one key the settings name: an HS256 secret, a PEM public key (RS256,
ES256 or EdDSA by its type) or the host site's JWKS (by ``kid``). The
algorithm is fixed by the key, never taken from the token. What the claims
mean (``sub``, ``name``, ``rooms``) is checked here. A refusal carries the
close reason the client is told and a detail for the log; no token text
ever goes into either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import ExpiredSignatureError, InvalidTokenError, PyJWKError

from config.settings import Settings
from handlers.identity import Identity
from handlers.jwks import JwksCache
from handlers.names import name_problem, normalise_name, visible_name

PRESENTED_LEEWAY = 10.0  # seconds of clock skew allowed on exp and nbf when a token is presented
MAX_TOKEN_CHARS = 8192
MAX_SUB_CHARS = 128
MAX_ROOM_GRANTS = 1000

TOKEN_REQUIRED = "token required"
BAD_TOKEN = "bad token"
TOKEN_EXPIRED = "token expired"
NOT_ALLOWED = "not allowed in this room"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TokenRefused(Exception):
    """A token that does not admit: ``reason`` is what the client is told, ``detail`` what the log says."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def wildcard_match(pattern: str, name: str) -> bool:
    """Whether ``name`` is ``pattern`` with each ``*`` standing for any run of characters (nothing else is special).

    The greedy walk that backs up to the last ``*`` only: linear in practice
    and never exponential, whatever the pattern (a regular expression of
    ``a*a*a*...`` is).
    """
    p = n = 0
    star, resume = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] != "*" and pattern[p] == name[n]:
            p, n = p + 1, n + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, n
            p += 1
        elif star >= 0:
            resume += 1
            p, n = star + 1, resume
        else:
            return False
    return all(char == "*" for char in pattern[p:])


def matches_any(patterns: tuple[str, ...], room: str) -> bool:
    return any(wildcard_match(pattern, room) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Grant:
    """A verified token: the identity, when it ends (seconds since the epoch), the rooms it grants."""

    identity: Identity
    exp: float
    rooms: tuple[str, ...]

    def grants(self, room: str) -> bool:
        return matches_any(self.rooms, room)


class TokenVerifier:
    """Checks tokens against the configured key; one per process."""

    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._audience = settings.token_audience or None
        self._issuer = settings.token_issuer or None
        self._private = settings.private_rooms
        self._key: Any = None
        self._algorithm = ""
        self.jwks = jwks
        if settings.token_secret:
            self._key, self._algorithm = settings.token_secret, "HS256"
        elif settings.token_public_key_pem:
            self._key = load_pem_public_key(settings.token_public_key_pem.encode())
            self._algorithm = _algorithm_of(self._key)
        elif self.jwks is None and settings.token_jwks_url:
            self.jwks = JwksCache(settings.token_jwks_url)

    def is_private(self, room: str) -> bool:
        return matches_any(self._private, room)

    def admits(self, grant: Grant, room: str) -> bool:
        """Whether the grant lets its user into the room: any room, unless the room is private and not granted."""
        return not self.is_private(room) or grant.grants(room)

    async def verify(self, token: object) -> Grant:
        """The grant a token carries; raises TokenRefused."""
        if not isinstance(token, str) or not token:
            raise TokenRefused(TOKEN_REQUIRED, "no token")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused(BAD_TOKEN, f"token over {MAX_TOKEN_CHARS} characters")
        key, algorithm = await self._key_for(token)
        options: dict[str, Any] = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=PRESENTED_LEEWAY,
                options=options,  # type: ignore[arg-type]  # PyJWT types it as a TypedDict
            )
        except ExpiredSignatureError:
            raise TokenRefused(TOKEN_EXPIRED, "exp has passed") from None
        except (InvalidTokenError, PyJWKError, ValueError, TypeError, ArithmeticError) as exc:
            raise TokenRefused(BAD_TOKEN, str(exc) or type(exc).__name__) from None
        return _grant(claims)

    async def _key_for(self, token: str) -> tuple[Any, str]:
        if self.jwks is None:
            return self._key, self._algorithm
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except InvalidTokenError as exc:
            raise TokenRefused(BAD_TOKEN, str(exc)) from None
        if not isinstance(kid, str) or not kid:
            raise TokenRefused(BAD_TOKEN, "no kid in the token's header")
        jwk = await self.jwks.key(kid[:200])
        if jwk is None:
            raise TokenRefused(BAD_TOKEN, "unknown kid")
        return jwk.key, jwk.algorithm_name


def _algorithm_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"no accepted algorithm for a {type(key).__name__}")


def _grant(claims: dict[str, Any]) -> Grant:
    """The claims' meaning: ``sub`` the user, ``name`` shown (``sub`` when absent or refused), ``rooms`` granted."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB_CHARS or _CONTROL.search(sub):
        raise TokenRefused(BAD_TOKEN, f"sub must be 1 to {MAX_SUB_CHARS} characters without controls")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise TokenRefused(BAD_TOKEN, "exp must be a number")
    rooms = claims.get("rooms", [])
    if not isinstance(rooms, list) or len(rooms) > MAX_ROOM_GRANTS:
        raise TokenRefused(BAD_TOKEN, f"rooms must be a list of at most {MAX_ROOM_GRANTS} room names")
    if not all(isinstance(room, str) and 0 < len(room) <= 200 for room in rooms):
        raise TokenRefused(BAD_TOKEN, "rooms must hold room names (with * wildcards)")
    return Grant(Identity(display_name(claims.get("name"), sub), sub), float(exp), tuple(rooms))


def display_name(claimed: object, sub: str) -> str:
    """The ``name`` claim under the lobby's rules for names; the ``sub`` when it is absent or refused."""
    if isinstance(claimed, str):
        name = normalise_name(claimed)
        if name_problem(name) is None:
            return visible_name(name)
    return sub
