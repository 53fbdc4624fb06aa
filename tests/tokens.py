"""Tokens as a host site would issue them (PyJWT), and a JWKS served on loopback, for the token-mode tests."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.helpers import free_port

TOKEN_SECRET = "token-secret-of-the-tests-at-least-32-bytes"
OTHER_SECRET = "another-secret-that-signs-nothing-we-accept"


def claims(
    sub: str, *, name: str | None = None, ttl: float = 300.0, rooms: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl)}
    if name is not None:
        body["name"] = name
    if rooms is not None:
        body["rooms"] = rooms
    body.update(extra)
    return body


def hs256(sub: str, secret: str = TOKEN_SECRET, **kwargs: Any) -> str:
    return jwt.encode(claims(sub, **kwargs), secret, algorithm="HS256")


def token_cookie(token: str, name: str = "chat_token") -> dict[str, str]:
    return {"Cookie": f"{name}={token}"}


class RsaKey:
    """An RSA key pair with a kid: signs tokens (RS256), shows itself as a JWK and as a PEM."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(self, sub: str, **kwargs: Any) -> str:
        return jwt.encode(claims(sub, **kwargs), self.private, algorithm="RS256", headers={"kid": self.kid})

    def jwk(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        body.update(kid=self.kid, alg="RS256", use="sig")
        return body

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class _JwksHandler(RequestHandler):
    def initialize(self, site: "JwksSite") -> None:
        self.site = site

    def get(self) -> None:
        self.site.fetches += 1
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"keys": [key.jwk() for key in self.site.keys]}))


class JwksSite:
    """A host site's JWKS endpoint on a loopback port, in the test's own loop; counts its fetches."""

    def __init__(self, keys: list[RsaKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.port = free_port()
        self._server = HTTPServer(Application([("/jwks.json", _JwksHandler, {"site": self})]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def start(self) -> "JwksSite":
        self._server.listen(self.port, "127.0.0.1")
        return self

    def stop(self) -> None:
        self._server.stop()
