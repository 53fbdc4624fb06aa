"""The server API on each bus: every route against a real server, with members on the room WebSocket."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api_kit import api_settings, call
from tests.client import NOTICES, ChatClient, ids, strictly_increasing
from tests.tokens import TOKEN_SECRET, hs256, token_cookie

BACKENDS = ["memory", "redis", "cluster"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def api_server(make_server: Any, **extra: Any) -> Any:
    server = await make_server(**api_settings(**extra))
    assert server.api is not None and server.api.port > 0
    return server


@pytest.mark.gen_test(timeout=60)
async def test_publish_reaches_members_in_order_with_history_and_limits(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    ann = await ChatClient.connect(server.port, "news", user="ann")
    await ann.say("from ann")
    mine = await ann.messages(1)
    status, first = await call(port, "POST", "/api/rooms/news/messages", {"text": "order 1 shipped"})
    assert status == 201 and first["duplicate"] is False
    status, second = await call(
        port, "POST", "/api/rooms/news/messages", {"text": "hi", "user": "bot", "user_id": "b1"}
    )
    assert status == 201
    frames = mine + await ann.messages(2)
    assert [f["message"] for f in frames] == ["from ann", "order 1 shipped", "hi"]
    assert ids(frames)[1:] == [first["id"], second["id"]] and strictly_increasing(ids(frames))
    assert frames[1]["user"] == "system" and "user_id" not in frames[1]
    assert frames[2]["user"] == "bot" and frames[2]["user_id"] == "b1"
    # The same text limit as a member's: 4096 code points.
    status, body = await call(port, "POST", "/api/rooms/news/messages", {"text": "x" * 4097})
    assert (status, body["error"]) == (400, "message_too_long")
    status, body = await call(port, "POST", "/api/rooms/news/messages", {"text": ""})
    assert (status, body["error"]) == (400, "bad_request")
    # Later joins replay it.
    bob = await ChatClient.connect(server.port, "news", user="bob")
    assert [f["message"] for f in bob.history] == ["from ann", "order 1 shipped", "hi"]


@pytest.mark.gen_test(timeout=60)
async def test_idempotency_key_makes_one_message(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    body = {"text": "once", "idempotency_key": "k-1"}
    answers = [await call(port, "POST", "/api/rooms/idem/messages", body) for _ in range(3)]
    assert {a[1]["id"] for a in answers} == {answers[0][1]["id"]}
    assert [a[1]["duplicate"] for a in answers] == [False, True, True]
    status, page = await call(port, "GET", "/api/rooms/idem/messages")
    assert status == 200 and [m["message"] for m in page["messages"]] == ["once"]


@pytest.mark.gen_test(timeout=60)
async def test_api_publishes_are_held_by_the_keys_limit_not_a_members_message_budget(make_server: Any) -> None:
    # A member's budget in a room is shared by every process (on Redis, in publish.lua); the host
    # application's publishes as "system" are paced by its key's own limit instead.
    server = await api_server(make_server, rate_limit=2.0, rate_burst=5)
    port = server.api.port
    for k in range(20):
        status, body = await call(port, "POST", "/api/rooms/busy/messages", {"text": f"notice {k}"})
        assert status == 201, (k, body)
    status, page = await call(port, "GET", "/api/rooms/busy/messages?limit=100")
    assert status == 200 and len(page["messages"]) == 20


@pytest.mark.gen_test(timeout=60)
async def test_history_pages_since_before_and_limit(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    sent = []
    for k in range(30):
        status, body = await call(port, "POST", "/api/rooms/pages/messages", {"text": f"m{k}"})
        assert status == 201
        sent.append(body["id"])
    status, page = await call(port, "GET", "/api/rooms/pages/messages?limit=10")
    assert status == 200 and ids(page["messages"]) == sent[20:] and page["complete"] is False
    assert page["messages"][0]["type"] == "message" and page["messages"][0]["room"] == "pages"
    status, page = await call(port, "GET", f"/api/rooms/pages/messages?before={sent[20]}&limit=15")
    assert ids(page["messages"]) == sent[5:20] and page["complete"] is False
    status, page = await call(port, "GET", f"/api/rooms/pages/messages?before={sent[5]}&limit=15")
    assert ids(page["messages"]) == sent[:5] and page["complete"] is True
    status, page = await call(port, "GET", f"/api/rooms/pages/messages?since={sent[9]}&limit=5")
    assert ids(page["messages"]) == sent[10:15] and page["complete"] is False
    status, page = await call(port, "GET", f"/api/rooms/pages/messages?since={sent[24]}")
    assert ids(page["messages"]) == sent[25:] and page["complete"] is True
    status, page = await call(port, "GET", f"/api/rooms/pages/messages?since={sent[3]}&before={sent[8]}")
    assert ids(page["messages"]) == sent[4:8] and page["complete"] is True
    status, page = await call(port, "GET", "/api/rooms/pages/messages?limit=100")
    assert ids(page["messages"]) == sent and page["complete"] is True
    for bad in ("limit=1001", "limit=0", "limit=x", "since=nope", "before=1-2-3"):
        status, body = await call(port, "GET", f"/api/rooms/pages/messages?{bad}")
        assert (status, body["error"]) == (400, "bad_request"), bad
    status, page = await call(port, "GET", "/api/rooms/pages/messages?limit=1000")
    assert status == 200 and len(page["messages"]) == 30


@pytest.mark.gen_test(timeout=60)
async def test_members_and_rooms_with_a_cursor(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    clients = [
        await ChatClient.connect(server.port, room, user=user)
        for room, user in (("alpha", "ann"), ("alpha", "ann"), ("alpha", "bob"), ("beta", "cat"), ("gamma", "dan"))
    ]
    status, body = await call(port, "GET", "/api/rooms/alpha/members")
    assert status == 200
    assert body["members"] == [{"user": "ann", "connections": 2}, {"user": "bob", "connections": 1}]
    status, body = await call(port, "GET", "/api/rooms/empty/members")
    assert (status, body) == (200, {"members": []})
    seen, cursor = [], ""
    for _ in range(5):
        status, body = await call(port, "GET", f"/api/rooms?limit=2{'&cursor=' + cursor if cursor else ''}")
        assert status == 200 and len(body["rooms"]) <= 2
        seen += body["rooms"]
        if body["next"] is None:
            break
        cursor = body["next"]
    assert seen == [{"room": "alpha", "members": 2}, {"room": "beta", "members": 1}, {"room": "gamma", "members": 1}]
    for client in clients:
        client.close()


@pytest.mark.gen_test(timeout=60)
async def test_delete_reaches_every_member_and_later_joins(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    ann = await ChatClient.connect(server.port, "del", user="ann")
    bob = await ChatClient.connect(server.port, "del", user="bob")
    await ann.say("regrettable")
    await ann.say("fine")
    target, kept = await bob.messages(2)
    await ann.messages(2)
    status, body = await call(port, "DELETE", f"/api/rooms/del/messages/{target['id']}")  # not its author: allowed
    assert (status, body) == (200, {"id": target["id"], "deleted": True})
    for client in (ann, bob):
        assert await client.recv_type("deleted", skip=NOTICES) == {"type": "deleted", "id": target["id"]}
    status, page = await call(port, "GET", "/api/rooms/del/messages")
    assert ids(page["messages"]) == [kept["id"]]
    cat = await ChatClient.connect(server.port, "del", user="cat")
    assert ids(cat.history) == [kept["id"]]
    status, body = await call(port, "DELETE", f"/api/rooms/del/messages/{target['id']}")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await call(port, "DELETE", "/api/rooms/del/messages/12-3")
    assert (status, body["error"]) == (404, "not_found")


@pytest.mark.gen_test(timeout=60)
async def test_mute_refuses_sends_and_allows_reads_until_lifted(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    eve = await ChatClient.connect(server.port, "quiet", user="eve")
    status, mute = await call(port, "POST", "/api/rooms/quiet/mutes", {"user": "eve", "seconds": 60})
    assert status == 201 and mute["user"] == "eve" and mute["room"] == "quiet" and mute["until"] > time.time() * 1000
    await eve.say("let me talk", client_id="c1")
    error = await eve.recv_type("error", skip=NOTICES)
    assert error["error"] == "muted" and error["client_id"] == "c1"
    await call(port, "POST", "/api/rooms/quiet/messages", {"text": "you can read"})
    assert (await eve.recv_chat())["message"] == "you can read"
    status, body = await call(port, "GET", "/api/rooms/quiet/mutes")
    assert body == {"mutes": [mute]}
    status, body = await call(port, "GET", "/api/rooms/other/mutes")
    assert body == {"mutes": []}
    status, body = await call(port, "DELETE", "/api/rooms/quiet/mutes/eve")
    assert (status, body) == (200, {"lifted": True})
    await eve.say("back")
    assert (await eve.recv_chat())["message"] == "back"
    status, body = await call(port, "DELETE", "/api/rooms/quiet/mutes/eve")
    assert (status, body["error"]) == (404, "not_found")


@pytest.mark.gen_test(timeout=60)
async def test_a_muted_user_cannot_edit_or_type_but_can_delete_and_read_older(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    eve = await ChatClient.connect(server.port, "hush", user="eve")
    bob = await ChatClient.connect(server.port, "hush", user="bob")
    await eve.say("before the mute")
    await eve.say("also mine")
    first, second = await bob.messages(2)
    await eve.messages(2)
    status, _ = await call(port, "POST", "/api/rooms/hush/mutes", {"user": "eve", "seconds": 60})
    assert status == 201
    eve.send({"type": "edit", "id": first["id"], "message": "rewritten while muted"})
    assert (await eve.recv_type("error", skip=NOTICES))["error"] == "muted"
    eve.send({"typing": True})
    await call(port, "POST", "/api/rooms/hush/messages", {"text": "marker"})
    frame = await bob.recv()
    while frame["type"] in ("presence", "join", "leave"):
        frame = await bob.recv()
    assert frame["type"] == "message" and frame["message"] == "marker", frame  # no edit, no typing before it
    await eve.recv_chat()
    eve.send({"type": "delete", "id": second["id"]})
    assert await bob.recv_type("deleted", skip=NOTICES) == {"type": "deleted", "id": second["id"]}


@pytest.mark.gen_test(timeout=60)
async def test_disconnect_and_bans_in_a_room_and_everywhere(make_server: Any) -> None:
    server = await api_server(make_server)
    port = server.api.port
    here = await ChatClient.connect(server.port, "mod", user="mal")
    there = await ChatClient.connect(server.port, "elsewhere", user="mal")
    other = await ChatClient.connect(server.port, "mod", user="nia")
    status, body = await call(port, "POST", "/api/users/mal/disconnect", {"room": "mod", "ban_seconds": 60})
    assert status == 200 and body["room"] == "mod" and body["ban"]["room"] == "mod"
    assert await here.wait_closed() == 4003
    await call(port, "POST", "/api/rooms/mod/messages", {"text": "still here"})
    assert (await other.recv_chat())["message"] == "still here"  # others untouched
    await there.say("not banned here")
    assert (await there.recv_chat())["message"] == "not banned here"
    refused = await ChatClient.connect(server.port, "mod", user="mal", join=False)
    assert await refused.wait_closed() == 4003
    status, body = await call(port, "GET", "/api/rooms/mod/bans")
    assert [(b["user"], b["room"]) for b in body["bans"]] == [("mal", "mod")]
    # A ban in every room: listed under every room and at /api/bans.
    status, body = await call(port, "POST", "/api/users/mal/disconnect", {"ban_seconds": 60})
    assert status == 200 and body["ban"]["room"] is None
    assert await there.wait_closed() == 4003
    status, body = await call(port, "GET", "/api/rooms/anywhere/bans")
    assert [(b["user"], b["room"]) for b in body["bans"]] == [("mal", None)]
    status, body = await call(port, "GET", "/api/bans")
    assert [(b["user"], b["room"]) for b in body["bans"]] == [("mal", None)]
    status, _ = await call(port, "DELETE", "/api/bans/mal")
    assert status == 200
    status, _ = await call(port, "DELETE", "/api/rooms/mod/bans/mal")
    assert status == 200
    status, body = await call(port, "DELETE", "/api/rooms/mod/bans/mal")
    assert (status, body["error"]) == (404, "not_found")
    back = await ChatClient.connect(server.port, "mod", user="mal")
    assert back.ready is not None
    # Disconnect without a ban: closed, and may come back at once.
    status, body = await call(port, "POST", "/api/users/mal/disconnect", {})
    assert status == 200 and body["ban"] is None
    assert await back.wait_closed() == 4003
    again = await ChatClient.connect(server.port, "mod", user="mal")
    assert again.ready is not None


@pytest.mark.gen_test(timeout=60)
async def test_token_mode_moderates_by_user_id_over_every_name(make_server: Any, backend: str) -> None:
    server = await api_server(make_server, token_secret=TOKEN_SECRET)
    port = server.api.port
    # One user id under two names (two tabs of a site that renamed them), and another user.
    tabs = [
        await ChatClient.connect(server.port, "site", headers=token_cookie(hs256("u-42", name=name)))
        for name in ("Ann", "Annie")
    ]
    other = await ChatClient.connect(server.port, "site", headers=token_cookie(hs256("u-7", name="Ann")))
    status, body = await call(port, "GET", "/api/rooms/site/members")
    assert {(m["user_id"], m["connections"]) for m in body["members"]} >= {("u-7", 1)}
    status, _ = await call(port, "POST", "/api/rooms/site/mutes", {"user": "u-7", "seconds": 30})
    assert status == 201
    await other.say("muted by id")
    assert (await other.recv_type("error", skip=NOTICES))["error"] == "muted"
    status, _ = await call(port, "POST", "/api/users/u-42/disconnect", {"ban_seconds": 30})
    assert status == 200
    assert [await tab.wait_closed() for tab in tabs] == [4003, 4003]
    status, _ = await call(port, "POST", "/api/rooms/site/messages", {"text": "marker"})
    assert (await other.recv_chat())["message"] == "marker"  # the other user, same name, untouched
    refused = await ChatClient.connect(
        server.port, "site", headers=token_cookie(hs256("u-42", name="Someone")), join=False
    )
    assert await refused.wait_closed() == 4003
