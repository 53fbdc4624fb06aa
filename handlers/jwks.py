"""The host site's signing keys from its JWKS URL, by ``kid``: fetched when needed, at most once a minute.

A token whose ``kid`` is not in the set fetches the set again, so a key the
site has just rotated in is taken at once; but a flood of made-up ``kid``s
costs the site one fetch a minute, not one per handshake. Everyone who
needs a fetch while one is under way waits for that one. The set read last
is used until a later fetch succeeds; it is also read again (within the
same once-a-minute rule) once it is older than ``MAX_AGE``, so a key the site
removed stops being accepted even when no new key appears.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import orjson
import structlog
from jwt import PyJWK, PyJWKSet
from tornado.httpclient import AsyncHTTPClient

log = structlog.get_logger("chat.tokens")

MIN_INTERVAL = 60.0  # seconds between two fetches, whatever the tokens ask for
MAX_AGE = 600.0  # seconds a set is used before it is read again on the next token
FETCH_TIMEOUT = 5.0
MAX_SET_BYTES = 256 * 1024
ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})  # asymmetric only: a JWKS is public

Fetch = Callable[[str], Awaitable[bytes]]


async def http_fetch(url: str) -> bytes:
    response = await AsyncHTTPClient().fetch(
        url, request_timeout=FETCH_TIMEOUT, connect_timeout=FETCH_TIMEOUT, follow_redirects=False
    )
    return bytes(response.body)


class JwksCache:
    def __init__(self, url: str, fetch: Fetch = http_fetch, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock  # tests replace it to pass a minute at once
        self.fetches = 0
        self._fetch = fetch
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # when the last fetch began (failed or not)
        self._read_at: float | None = None  # when the set in use was read
        self._fetching: asyncio.Future[None] | None = None

    async def key(self, kid: str) -> PyJWK | None:
        """The key with this ``kid``, or None when the site's set has none (as of a fetch a minute ago)."""
        now = self.clock()
        fresh = self._read_at is not None and now - self._read_at < MAX_AGE
        if (kid not in self._keys or not fresh) and self._may_fetch(now):
            await self._refresh()
        return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._fetching is not None or self._fetched_at is None or now - self._fetched_at >= MIN_INTERVAL

    async def _refresh(self) -> None:
        if self._fetching is None:
            self._fetched_at = self.clock()
            self._fetching = asyncio.ensure_future(self._read())
            self._fetching.add_done_callback(self._fetched)
        await asyncio.shield(self._fetching)

    def _fetched(self, _: "asyncio.Future[None]") -> None:
        self._fetching = None

    async def _read(self) -> None:
        """Fetch and parse the set; on any failure keep the one in use (and say why, once per fetch)."""
        self.fetches += 1
        try:
            body = await asyncio.wait_for(self._fetch(self.url), FETCH_TIMEOUT)
            if len(body) > MAX_SET_BYTES:
                raise ValueError(f"the set is over {MAX_SET_BYTES} bytes")
            keys = parse_set(orjson.loads(body))
        except Exception as exc:  # the site's answer, whatever it is, must not fail a handshake: the old set stays
            log.warning("tokens.jwks_failed", url=self.url, reason=str(exc) or type(exc).__name__)
            return
        self._keys = keys
        self._read_at = self.clock()
        log.info("tokens.jwks_read", url=self.url, keys=len(keys))


def parse_set(body: Any) -> dict[str, PyJWK]:
    """The usable keys of a JWKS document by ``kid``: asymmetric, of an accepted algorithm, with a ``kid``."""
    if not isinstance(body, dict):
        raise ValueError("the set is not a JSON object")
    found = PyJWKSet.from_dict(body)
    return {
        jwk.key_id: jwk
        for jwk in found.keys
        if jwk.key_id and jwk.algorithm_name in ALGORITHMS and jwk.public_key_use in (None, "sig")
    }
