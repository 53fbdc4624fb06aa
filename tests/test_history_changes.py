"""Older history, edits and deletions over the room WebSocket, on every bus backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from bus.message import id_key
from tests.client import CHANGES, NOTICES, ChatClient, ids, strictly_increasing
from tests.conftest import Spawn

Frame = dict[str, Any]


async def say_all(client: ChatClient, texts: list[str]) -> list[Frame]:
    for text in texts:
        await client.say(text)
    return await client.messages(len(texts), timeout=30)


async def older(client: ChatClient, before: str, limit: int | None = None) -> Frame:
    body: dict[str, Any] = {"type": "older", "before": before}
    if limit is not None:
        body["limit"] = limit
    client.send(body)
    return await client.recv_type("older", skip=NOTICES + ("message",))


async def error(client: ChatClient) -> Frame:
    return await client.recv_type("error", skip=NOTICES)


async def change(client: ChatClient, kind: str) -> Frame:
    """The next edit or deletion event (chat messages and notices may come first)."""
    return await client.recv_type(kind, skip=NOTICES + ("message",))


def texts(frames: list[Frame]) -> list[str]:
    return [f["message"] for f in frames]


# ---- older ----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_older_pages_back_to_the_first_retained_message(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    writer = await ChatClient.connect(server.port, "deep", user="ann")
    sent = await say_all(writer, [f"m{k}" for k in range(120)])

    reader = await ChatClient.connect(server.port, "deep", user="bob")
    assert texts(reader.history) == [f"m{k}" for k in range(70, 120)]
    page = await older(reader, reader.history[0]["id"])
    assert page["before"] == reader.history[0]["id"] and page["complete"] is False
    assert texts(page["messages"]) == [f"m{k}" for k in range(20, 70)]  # default 50, oldest first
    assert ids(page["messages"]) == ids(sent[20:70]) and strictly_increasing(ids(page["messages"]))
    first = page["messages"][0]
    assert set(first) == {"type", "id", "room", "user", "message", "ts"} and first["user"] == "ann"
    last = await older(reader, first["id"], limit=200)
    assert texts(last["messages"]) == [f"m{k}" for k in range(20)] and last["complete"] is True
    nothing = await older(reader, sent[0]["id"])
    assert nothing["messages"] == [] and nothing["complete"] is True
    small = await older(reader, sent[10]["id"], limit=3)
    assert texts(small["messages"]) == ["m7", "m8", "m9"] and small["complete"] is False


@pytest.mark.gen_test(timeout=60)
async def test_older_stops_at_retention_and_works_after_a_resume(make_server: Any) -> None:
    server = await make_server(rate_limit=0, retention=30)
    writer = await ChatClient.connect(server.port, "kept", user="ann")
    sent = await say_all(writer, [f"m{k}" for k in range(40)])

    resumed = await ChatClient.connect(server.port, "kept", user="bob", since=sent[35]["id"])
    assert texts(resumed.history) == ["m36", "m37", "m38", "m39"]
    page = await older(resumed, sent[36]["id"], limit=200)
    retained = texts(page["messages"])
    assert retained == [f"m{k}" for k in range(36 - len(retained), 36)]
    assert 26 <= len(retained) <= 32 and page["complete"] is True  # retention, trimmed in batches


@pytest.mark.gen_test(timeout=30)
async def test_bad_older_requests_get_bad_request_and_the_connection_lives(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    client = await ChatClient.connect(server.port, "badold", user="ann")
    [sent] = await say_all(client, ["one"])
    for body in (
        {"type": "older"},
        {"type": "older", "before": "yesterday"},
        {"type": "older", "before": 5},
        {"type": "older", "before": sent["id"], "limit": 201},
        {"type": "older", "before": sent["id"], "limit": 0},
        {"type": "older", "before": sent["id"], "limit": "10"},
        {"type": "older", "before": sent["id"], "limit": True},
        {"type": "edit", "id": sent["id"]},
        {"type": "edit", "id": sent["id"], "message": ""},
        {"type": "edit", "message": "x"},
        {"type": "delete", "id": "1-2-3"},
    ):
        client.send(body)
        refused = await error(client)
        assert refused["error"] == "bad_request", (body, refused)
    client.send({"type": "edit", "id": sent["id"], "message": "x" * 4097})
    assert (await error(client))["error"] == "message_too_long"
    [after] = await say_all(client, ["still here"])
    assert after["message"] == "still here"
    assert texts((await older(client, after["id"]))["messages"]) == ["one"]


# ---- edits and deletions ----------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_an_edit_and_a_deletion_reach_every_member_in_the_rooms_order(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    ann = await ChatClient.connect(server.port, "fix", user="ann")
    bob = await ChatClient.connect(server.port, "fix", user="bob")
    first, second = await say_all(ann, ["helo", "oops"])
    await bob.messages(2)

    ann.send({"type": "edit", "id": first["id"], "message": "hello"})
    ann.send({"type": "delete", "id": second["id"]})
    await ann.say("after")
    for client in (ann, bob):
        frames = [await client.recv_type(kind, skip=NOTICES) for kind in ("edited", "deleted", "message")]
        edited, deleted, marker = frames
        assert edited == {"type": "edited", "id": first["id"], "message": "hello", "edited_ts": edited["edited_ts"]}
        assert abs(edited["edited_ts"] / 1000 - time.time()) < 60 and edited["edited_ts"] >= first["ts"]
        assert deleted == {"type": "deleted", "id": second["id"]}
        assert marker["message"] == "after"


@pytest.mark.gen_test(timeout=60)
async def test_others_get_not_allowed_and_unknown_ids_not_found(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    ann = await ChatClient.connect(server.port, "mine", user="ann")
    bob = await ChatClient.connect(server.port, "mine", user="bob")
    [message] = await say_all(ann, ["ann's"])
    await bob.messages(1)

    bob.send({"type": "edit", "id": message["id"], "message": "bob was here"})
    assert (await error(bob))["error"] == "not_allowed"
    bob.send({"type": "delete", "id": message["id"]})
    assert (await error(bob))["error"] == "not_allowed"
    ann.send({"type": "edit", "id": "1-0", "message": "x"})
    assert (await error(ann))["error"] == "not_found"
    ann.send({"type": "delete", "id": f"{message['ts'] + 999999}-0"})
    assert (await error(ann))["error"] == "not_found"
    ann.send({"type": "delete", "id": message["id"]})
    assert (await change(ann, "deleted"))["id"] == message["id"]
    for body in ({"type": "delete", "id": message["id"]}, {"type": "edit", "id": message["id"], "message": "x"}):
        ann.send(body)
        assert (await error(ann))["error"] == "not_found"  # already deleted
    # Nothing refused reached anyone: bob's next frame is the deletion, then the marker.
    await ann.say("marker")
    assert (await bob.recv_type("deleted", skip=NOTICES))["id"] == message["id"]
    assert (await bob.recv_type("message", skip=NOTICES))["message"] == "marker"


@pytest.mark.gen_test(timeout=60)
async def test_an_edit_past_the_edit_window_is_not_allowed_a_deletion_is(make_server: Any) -> None:
    server = await make_server(rate_limit=0, edit_window=0.05)
    ann = await ChatClient.connect(server.port, "late", user="ann")
    [message] = await say_all(ann, ["slow"])
    deadline = time.monotonic() + 5
    while time.time() * 1000 <= message["ts"] + 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the window is wall-clock time: let 50 ms of it pass
    ann.send({"type": "edit", "id": message["id"], "message": "too late"})
    refused = await error(ann)
    assert refused["error"] == "not_allowed" and "edited" in refused["detail"]
    ann.send({"type": "delete", "id": message["id"]})
    assert (await change(ann, "deleted"))["id"] == message["id"]


@pytest.mark.gen_test(timeout=60)
async def test_a_join_shows_messages_as_they_are_now(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    ann = await ChatClient.connect(server.port, "now", user="ann")
    sent = await say_all(ann, [f"m{k}" for k in range(60)])
    ann.send({"type": "edit", "id": sent[59]["id"], "message": "m59 fixed"})
    ann.send({"type": "edit", "id": sent[59]["id"], "message": "m59 fixed again"})
    for k in (58, 30, 5):
        ann.send({"type": "delete", "id": sent[k]["id"]})
    ann.send({"type": "edit", "id": sent[4]["id"], "message": "m4 fixed"})
    while (await ann.recv_type("edited", skip=NOTICES + ("deleted",)))["message"] != "m4 fixed":
        pass

    late = await ChatClient.connect(server.port, "now", user="bob")
    shown = [k for k in range(60) if k not in (58, 30, 5)]
    expected = [f"m{k}" for k in shown[-50:]]
    expected[-1] = "m59 fixed again"
    assert texts(late.history) == expected  # 50 messages shown, deletions not counted
    assert late.history[-1]["edited"] is True and late.history[-1]["edited_ts"] >= sent[59]["ts"]
    assert all("edited" not in f for f in late.history[:-1])
    assert all(f["type"] == "message" for f in late.history)
    page = await older(late, late.history[0]["id"])
    assert texts(page["messages"]) == ["m0", "m1", "m2", "m3", "m4 fixed", "m6", "m7"]
    assert page["messages"][4]["edited"] is True and page["complete"] is True


@pytest.mark.gen_test(timeout=60)
async def test_a_resume_gets_the_changes_made_while_away(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    ann = await ChatClient.connect(server.port, "away", user="ann")
    sent = await say_all(ann, ["a", "b", "c"])
    bob = await ChatClient.connect(server.port, "away", user="bob")
    seen = bob.history[-1]["id"]
    bob.drop()

    ann.send({"type": "edit", "id": sent[0]["id"], "message": "a2"})
    await change(ann, "edited")
    ann.send({"type": "delete", "id": sent[1]["id"]})
    await change(ann, "deleted")
    [d] = await say_all(ann, ["d"])
    ann.send({"type": "edit", "id": d["id"], "message": "d2"})
    await change(ann, "edited")

    back = await ChatClient.connect(server.port, "away", user="bob", since=seen)
    assert [(f["type"], f["id"]) for f in back.history] == [
        ("edited", sent[0]["id"]),
        ("deleted", sent[1]["id"]),
        ("message", d["id"]),  # after since: shown as it is now, without its own event
    ]
    assert back.history[0]["message"] == "a2" and back.history[2]["message"] == "d2"
    assert back.history[2]["edited"] is True and back.ready is not None and back.ready["complete"] is True

    # Changes of messages after since are not events: those messages come as they are now.
    early = await ChatClient.connect(server.port, "away", user="eve", since=sent[0]["id"])
    assert [(f["type"], f.get("message")) for f in early.history] == [
        ("message", "c"),
        ("edited", "a2"),
        ("message", "d2"),
    ]
    assert early.ready is not None and id_key(early.ready["last_id"]) > id_key(d["id"])  # the last edit's
    fresh = await ChatClient.connect(server.port, "away", user="eve", since=f"{sent[0]['ts'] - 1}-0")
    assert [(f["type"], f.get("message")) for f in fresh.history] == [
        ("message", "a2"),
        ("message", "c"),
        ("message", "d2"),
    ]
    assert not any(f["type"] in CHANGES for f in fresh.history)  # the room's newest entry is the last edit


# ---- two processes over Redis -------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_edits_and_deletions_cross_processes_in_order(spawn: Spawn, redis_db: str) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db, "--edit-window", "60")
    ann = await ChatClient.connect(one.port, "span", user="ann")
    bob = await ChatClient.connect(two.port, "span", user="bob")
    first, second = await say_all(ann, ["helo", "oops"])
    await bob.messages(2)

    ann.send({"type": "edit", "id": first["id"], "message": "hello"})  # through n1
    ann.send({"type": "delete", "id": second["id"]})
    # Stored once ann hears them back: only then is bob's marker, sent through
    # the other process, certain to come after them in the room's one order.
    await change(ann, "edited")
    await change(ann, "deleted")
    bob.send({"type": "edit", "id": first["id"], "message": "bob's"})  # through n2: not his
    await bob.say("marker")
    got: list[Frame] = []
    while not got or got[-1].get("message") != "marker":
        got.append(await bob.recv_chat())
    [refused] = [f for f in got if f["type"] == "error"]
    assert refused["error"] == "not_allowed"
    changes = [f for f in got if f["type"] in CHANGES]
    assert changes == [
        {"type": "edited", "id": first["id"], "message": "hello", "edited_ts": changes[0]["edited_ts"]},
        {"type": "deleted", "id": second["id"]},
    ]
    marker = got[-1]

    late = await ChatClient.connect(two.port, "span", user="eve")
    assert [(f["message"], f.get("edited")) for f in late.history] == [("hello", True), ("marker", None)]
    assert late.history[-1]["id"] == marker["id"]


@pytest.mark.gen_test(timeout=30)
async def test_ids_at_the_ends_of_the_range_are_answered_not_failed(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    client = await ChatClient.connect(server.port, "ends", user="ann")
    sent = await say_all(client, ["a", "b"])
    largest = f"{2**64 - 1}-{2**64 - 1}"
    for before, expected in (("0-0", []), ("0-1", []), (largest, ["a", "b"]), (sent[1]["id"], ["a"])):
        page = await older(client, before)
        assert texts(page["messages"]) == expected and page["complete"] is True, before
    for body in ({"type": "edit", "id": largest, "message": "x"}, {"type": "delete", "id": "0-0"}):
        client.send(body)
        assert (await error(client))["error"] == "not_found"
    [after] = await say_all(client, ["still fine"])
    assert after["message"] == "still fine"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("log_text", [False, True])
async def test_changes_are_logged_without_text_unless_configured(make_server: Any, log_text: bool) -> None:
    server = await make_server(rate_limit=0, log_message_text=log_text)
    client = await ChatClient.connect(server.port, "logged", user="ann")
    [sent] = await say_all(client, ["secret"])
    with capture_logs() as logs:
        client.send({"type": "edit", "id": sent["id"], "message": "new secret"})
        await change(client, "edited")
        client.send({"type": "delete", "id": sent["id"]})
        await change(client, "deleted")
    edited, deleted = [e for e in logs if e["event"] in ("message.edited", "message.deleted")]
    assert edited["msg_id"] == deleted["msg_id"] == sent["id"] and edited["event"] == "message.edited"
    assert ("text" in edited) is log_text and "text" not in deleted
    assert not log_text or edited["text"] == "new secret"
