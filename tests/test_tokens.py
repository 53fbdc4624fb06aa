"""Token mode (identity from the host site): refusals, grants, refresh and expiry, JWKS rotation, one user by sub.

Every refusal is checked against a real server: the close code and reason,
nothing sent before the close, one log line with the reason and never the
token. Two tabs and two processes of one ``sub`` are one member.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, MutableMapping

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from structlog.testing import capture_logs
from tornado.httpclient import HTTPClientError

from config.settings import settings_from
from tests.client import ChatClient
from tests.conftest import Spawn
from tests.helpers import ON_MEMORY, eventually, handshake_status
from tests.tokens import OTHER_SECRET, TOKEN_SECRET, JwksSite, RsaKey, hs256, token_cookie

Frame = dict[str, Any]


async def refused(
    port: int, room: str, *, cookie: str | None = None, first: Any = None
) -> tuple[int, str, list[Frame]]:
    """Open a socket (a token in the cookie, or a first frame), wait for the close: (code, reason, frames before it)."""
    headers = token_cookie(cookie) if cookie is not None else None
    client = await ChatClient.connect(port, room, headers=headers, join=False)
    if first is not None:
        client.send(first)
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await client.recv(timeout=10))
    except ConnectionError:
        pass
    return client.conn.close_code or 0, client.conn.close_reason or "", frames


async def authed(port: int, room: str, token: str, *, by_frame: bool = False) -> ChatClient:
    """Join with a token (cookie, or auth frame); returns once ready came."""
    if by_frame:
        client = await ChatClient.connect(port, room, join=False)
        client.send({"type": "auth", "token": token})
        await client.read_join()
        return client
    return await ChatClient.connect(port, room, headers=token_cookie(token))


def auth_refusals(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry.get("event") == "ws.auth_refused"]


# ---- acceptance 1: each refusal, and the granted case ----------------------


@ON_MEMORY
@pytest.mark.gen_test(timeout=60)
async def test_each_refusal_closes_4001_or_4003_with_its_reason_and_logs_it_once_without_the_token(
    make_server: Any,
) -> None:
    server = await make_server(
        token_secret=TOKEN_SECRET,
        token_audience="chat",
        token_issuer="https://site.example",
        private_rooms=("staff", "team_*"),
        auth_timeout=0.5,
    )
    good = {"aud": "chat", "iss": "https://site.example"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("none", {}, 4001, "token required"),
        ("first frame not auth", {"first": {"message": "hi"}}, 4001, "token required"),
        ("bad signature, cookie", {"cookie": hs256("ann", OTHER_SECRET, **good)}, 4001, "bad token"),
        (
            "bad signature, frame",
            {"first": {"type": "auth", "token": hs256("ann", OTHER_SECRET, **good)}},
            4001,
            "bad token",
        ),
        ("not a jwt", {"first": {"type": "auth", "token": "abc.def"}}, 4001, "bad token"),
        ("wrong aud", {"cookie": hs256("ann", aud="elsewhere", iss=good["iss"])}, 4001, "bad token"),
        ("no aud", {"cookie": hs256("ann", iss=good["iss"])}, 4001, "bad token"),
        ("wrong iss", {"cookie": hs256("ann", aud="chat", iss="https://evil.example")}, 4001, "bad token"),
        ("expired", {"cookie": hs256("ann", ttl=-60, **good)}, 4001, "token expired"),
        ("expired, frame", {"first": {"type": "auth", "token": hs256("ann", ttl=-60, **good)}}, 4001, "token expired"),
        ("no sub", {"cookie": hs256("", **good)}, 4001, "bad token"),
    ]
    tokens_sent: list[str] = []
    for label, how, code, reason in cases:
        token = how.get("cookie") or (how.get("first") or {}).get("token")
        if token:
            tokens_sent.append(token)
        with capture_logs() as logs:
            got = await refused(server.port, "lobby_room", **how)
            # The refusal is logged before the close is sent; the server's ws.disconnect line ends the story.
            await eventually(lambda: disconnected(logs), 5, label)
        assert got == (code, reason, []), label
        lines = auth_refusals(logs)
        assert len(lines) == 1 and lines[0]["reason"] == reason and lines[0]["code"] == code, (label, lines)
        assert not any(t in repr(logs) for t in tokens_sent), label

    # A private room: 4003 without a grant (a pattern grant works, another room's does not).
    for rooms in (None, ["other"], ["team_b"]):
        got = await refused(server.port, "team_a", cookie=hs256("ann", rooms=rooms, **good))
        assert got == (4003, "not allowed in this room", []), rooms


async def disconnected(logs: list[MutableMapping[str, Any]]) -> bool:
    return any(entry.get("event") == "ws.disconnect" for entry in logs)


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_a_token_in_the_url_is_refused_with_400_before_anything_is_logged_with_it(make_server: Any) -> None:
    server = await make_server(token_secret=TOKEN_SECRET)
    token = hs256("ann")
    with capture_logs() as logs:
        for query in (f"?token={token}", f"?access_token={token}", f"?since=1-0&x={token}", "?jwt=x"):
            assert await handshake_status(server.port, f"/ws/chat/r/{query}") == 400, query
    assert len(auth_refusals(logs)) == 4
    assert token not in repr(logs)
    # since alone is not a token
    client = await ChatClient.connect(server.port, "r", since="1-0", headers=token_cookie(token))
    assert client.ready is not None and client.ready["user_id"] == "ann"


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_a_granted_token_joins_as_its_name_and_every_frame_about_the_user_carries_its_sub(
    make_server: Any,
) -> None:
    server = await make_server(token_secret=TOKEN_SECRET, private_rooms=("team_*",))
    ann = await authed(server.port, "team_a", hs256("u-1", name="Ann Lee", rooms=["team_*"]))
    assert ann.ready is not None
    assert (ann.ready["user"], ann.ready["user_id"]) == ("Ann Lee", "u-1")
    assert (await ann.recv())["members"] == [{"user": "Ann Lee", "user_id": "u-1", "connections": 1}]
    # By the first frame this time; a name the lobby would refuse shows the sub instead.
    bob = await authed(server.port, "team_a", hs256("u-2", name="   ", rooms=["team_a"]), by_frame=True)
    assert bob.ready is not None and (bob.ready["user"], bob.ready["user_id"]) == ("u-2", "u-2")
    assert await ann.recv_type("join", skip=()) == {"type": "join", "user": "u-2", "user_id": "u-2"}
    await bob.say("hello", client_id="c1")
    message = await ann.recv_type("message")
    assert (message["user"], message["user_id"], message["message"]) == ("u-2", "u-2", "hello")
    bob.send({"typing": True})
    assert await ann.recv_type("typing") == {"type": "typing", "user": "u-2", "user_id": "u-2"}
    bob.close()
    assert await ann.recv_type("leave") == {"type": "leave", "user": "u-2", "user_id": "u-2"}
    # The replay carries the sub too.
    carl = await authed(server.port, "team_a", hs256("u-3", rooms=["*"]))
    assert [(m["user"], m["user_id"]) for m in carl.history] == [("u-2", "u-2")]
    # Rooms that are not private are open to any valid token.
    dan = await authed(server.port, "open_room", hs256("u-4"))
    assert dan.ready is not None and dan.ready["user_id"] == "u-4"


# ---- refresh and expiry -----------------------------------------------------


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_a_refresh_extends_the_connection_another_sub_closes_it_and_expiry_closes_it(make_server: Any) -> None:
    server = await make_server(token_secret=TOKEN_SECRET)
    ann = await authed(server.port, "r", hs256("ann", ttl=2))
    fresh = hs256("ann", ttl=300)
    ann.send({"type": "refresh", "token": fresh})
    frame = await ann.recv_type("refreshed")
    assert abs(frame["exp"] - (time.time() + 300)) < 5
    # Past the first token's exp (2 s) the connection still works.
    started = time.monotonic()
    while time.monotonic() - started < 3:
        await ann.say(f"at {time.monotonic() - started:.1f}")
        await ann.recv_type("message")
        await asyncio.sleep(0.5)  # pacing the messages over the old exp, not synchronisation
    # A chat message that mentions the word is still a message.
    await ann.say('"refresh"')
    assert (await ann.recv_type("message"))["message"] == '"refresh"'

    ann.send({"type": "refresh", "token": hs256("bob")})
    with pytest.raises(ConnectionError, match="4001 bad token"):
        await ann.recv_type("never", skip=("message",))

    short = await authed(server.port, "r", hs256("carl", ttl=1))
    with pytest.raises(ConnectionError, match="4001 token expired"):
        await short.recv_type("never", timeout=10, skip=("presence", "join", "leave", "message"))


# ---- acceptance 2: JWKS rotation -----------------------------------------------


@ON_MEMORY
@pytest.mark.gen_test(timeout=120)
async def test_jwks_rotation_takes_a_new_kid_refuses_a_removed_one_and_fetches_at_most_once_a_minute(
    make_server: Any,
) -> None:
    old, new, stranger = RsaKey("k-old"), RsaKey("k-new"), RsaKey("k-unknown")
    site = JwksSite([old]).start()
    try:
        server = await make_server(token_jwks_url=site.url)
        now = [1000.0]
        server.tokens.jwks.clock = lambda: now[0]  # a minute passes when the test says so

        ann = await authed(server.port, "r", old.sign("ann"))
        assert site.fetches == 1

        now[0] += 61

        async def unknown(k: int) -> int:
            code, reason, frames = await refused(server.port, "r", cookie=stranger_token(stranger, k))
            assert (reason, frames) == ("bad token", []), reason
            return code

        codes: list[int] = []
        for start in range(0, 200, 20):
            codes += await asyncio.gather(*(unknown(k) for k in range(start, start + 20)))
        assert codes == [4001] * 200
        assert site.fetches == 2  # one fetch for 200 unknown kids within the minute

        site.keys = [new]  # the site rotates: the old key is gone
        refused_new = await refused(server.port, "r", cookie=new.sign("bob"))
        assert refused_new[:2] == (4001, "bad token") and site.fetches == 2  # within the minute: not fetched yet
        now[0] += 61
        bob = await authed(server.port, "r", new.sign("bob"))
        assert bob.ready is not None and bob.ready["user_id"] == "bob" and site.fetches == 3
        assert (await refused(server.port, "r", cookie=old.sign("ann")))[:2] == (4001, "bad token")
        assert site.fetches == 3
        ann.close()
    finally:
        site.stop()


def stranger_token(key: RsaKey, k: int) -> str:
    key.kid = f"k-unknown-{k}"
    return key.sign("mallory")


# ---- acceptance 3: one user across tabs and processes ------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_two_tabs_and_two_processes_of_one_sub_are_one_member(
    spawn: Spawn, redis_db: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token-secret"
    secret_file.write_text(TOKEN_SECRET + "\n")
    one = await spawn("node-1", redis_db, "--token-secret-file", str(secret_file))
    two = await spawn("node-2", redis_db, "--token-secret-file", str(secret_file))

    bob = await authed(two.port, "hall", hs256("u-bob", name="Bob"))
    assert (await bob.recv())["members"] == [{"user": "Bob", "user_id": "u-bob", "connections": 1}]
    tabs = [await authed(port, "hall", hs256("u-ann", name="Ann")) for port in (one.port, one.port, two.port)]
    carl = await authed(one.port, "hall", hs256("u-carl", name="Carl"))

    # One join for Ann's three connections: the next notice after hers is Carl's.
    joins = [await bob.recv_type("join", timeout=10) for _ in range(2)]
    assert [(j["user"], j["user_id"]) for j in joins] == [("Ann", "u-ann"), ("Carl", "u-carl")]
    members = (await carl.recv())["members"]
    assert {(m["user_id"], m["connections"]) for m in members} == {("u-ann", 3), ("u-bob", 1), ("u-carl", 1)}

    for tab in tabs[:2]:
        tab.close()
    tabs[2].close()
    assert (await bob.recv_type("leave", timeout=10))["user_id"] == "u-ann"


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_rate_limits_charge_the_sub_across_its_tabs_and_not_the_address(make_server: Any) -> None:
    server = await make_server(
        token_secret=TOKEN_SECRET, rate_limit=0.01, rate_burst=2, client_rate_limit=0.01, client_rate_burst=3
    )
    tab1 = await authed(server.port, "r", hs256("ann"))
    tab2 = await authed(server.port, "r", hs256("ann"))
    await tab1.say("1", client_id="a1")
    await tab2.say("2", client_id="a2")
    await tab2.say("3", client_id="a3")  # the third of one user, whichever tab: over the burst of 2
    assert (await tab2.recv_type("error", skip=("message", "ack", "presence", "join")))["error"] == "rate_limited"
    # Another user on the same address has budgets of its own (in cookie mode the address's 3 would be spent).
    bob = await authed(server.port, "r", hs256("bob"))
    for k in range(2):
        await bob.say(f"b{k}", client_id=f"b{k}")
        assert (await bob.recv_type("ack", skip=("message", "presence", "join")))["client_id"] == f"b{k}"


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_a_message_that_mentions_refresh_or_auth_is_charged_once(make_server: Any) -> None:
    server = await make_server(token_secret=TOKEN_SECRET, rate_limit=0.01, rate_burst=2)
    ann = await authed(server.port, "r", hs256("ann"))
    for k, text in enumerate(("refresh", "auth")):  # the whole text: the frame holds '"refresh"'
        await ann.say(text, client_id=f"a{k}")
        assert (await ann.recv_type("ack", skip=("message", "presence", "join")))["client_id"] == f"a{k}"


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_without_token_settings_an_auth_frame_is_just_a_bad_request(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "r", user="ann")
    assert client.ready is not None and "user_id" not in client.ready
    client.send({"type": "auth", "token": hs256("ann")})
    assert (await client.recv_type("error"))["error"] == "bad_request"
    try:
        await ChatClient.connect(server.port, "r", headers=token_cookie(hs256("x")), since="1-0")
    except HTTPClientError as exc:  # pragma: no cover - the failure's message
        raise AssertionError(exc) from None


@ON_MEMORY
@pytest.mark.gen_test(timeout=30)
async def test_a_public_key_fixes_the_algorithm_so_a_token_signed_with_it_as_an_hmac_secret_is_refused(
    make_server: Any, tmp_path: Path
) -> None:
    rsa_key = RsaKey("k")
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(rsa_key.public_pem())
    loaded = settings_from({"token_public_key": str(pem)}, {})
    server = await make_server(token_public_key=str(pem), token_public_key_pem=loaded.token_public_key_pem)
    ann = await authed(server.port, "r", rsa_key.sign("ann"))
    assert ann.ready is not None and ann.ready["user_id"] == "ann"
    # The classic confusion: HS256 with the public key's PEM as the secret. PyJWT itself refuses
    # to sign with a PEM as an HMAC key, so the token is put together by hand.
    forged = forge_hs256({"sub": "mallory", "exp": int(time.time()) + 60}, rsa_key.public_pem())
    assert (await refused(server.port, "r", cookie=forged))[:2] == (4001, "bad token")

    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_pem = tmp_path / "ed.pem"
    ed_pem.write_bytes(
        ed_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ed_server = await make_server(token_public_key=str(ed_pem), token_public_key_pem=ed_pem.read_text())
    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, ed_key, algorithm="EdDSA")
    bob = await authed(ed_server.port, "r", token)
    assert bob.ready is not None and bob.ready["user_id"] == "bob"
    assert (await refused(ed_server.port, "r", cookie=rsa_key.sign("bob")))[:2] == (4001, "bad token")


def forge_hs256(body: dict[str, Any], secret: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(body).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)
