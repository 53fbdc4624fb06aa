"""``--data-file``: the in-process bus keeps every room's history across a restart.

The backend tests drive ``MemoryBackend`` with a ``MessageStore`` directly and
"restart" it by closing it and opening a new one on the same file; the process
tests restart a real ``server.py`` (SIGTERM, and SIGKILL: a crash) as
``make run`` runs it, with WebSocket clients resuming with ``since``.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bus.backend import BusUnavailable, ChangeRefused
from bus.memory import MemoryBackend
from bus.memory_store import MessageStore
from bus.message import ChangeDraft, Draft, IdKey, id_key
from config.cli import load_settings
from config.settings import SettingsError
from tests.api_kit import API_KEY, call
from tests.client import NOTICES, TEST_SECRET, ChatClient, ids, strictly_increasing
from tests.helpers import free_port
from tests.processes import ServerProcess
from tests.test_api_processes import admitted
from tests.test_cli import start_make_run

CHANGE_SKIP = NOTICES + ("message",)


def _ignore(*_: Any) -> None:
    return None


async def started(path: Path, retention: int = 100, room_ttl: float = 0.0) -> MemoryBackend:
    backend = MemoryBackend(retention, 600.0, room_ttl, MessageStore(str(path)))
    await backend.start(_ignore)
    return backend


@pytest.mark.gen_test(timeout=20)
async def test_a_restart_keeps_history_ids_and_epoch_and_a_resume_across_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    first = await started(path)
    sent = [(await first.publish(Draft("room", "ann", f"m{i}", f"c{i}"))).message for i in range(30)]
    await first.close()

    second = await started(path)
    history = await second.history("room", None, 50)
    assert [m.id for m in history.messages] == [m.id for m in sent] and history.complete
    assert [m.text for m in history.messages] == [f"m{i}" for i in range(30)]
    resumed = await second.history("room", sent[9].key, 50)
    assert [m.id for m in resumed.messages] == [m.id for m in sent[10:]] and resumed.complete
    newer = (await second.publish(Draft("room", "bob", "after the restart"))).message
    assert newer.key > sent[-1].key
    # The client_id of a message stored before the restart is still known: a resend is not stored twice.
    again = await second.publish(Draft("room", "ann", "m3", "c3"))
    assert again.duplicate and again.message.id == sent[3].id
    await second.close()


@pytest.mark.gen_test(timeout=20)
async def test_trimming_survives_a_restart_so_a_since_before_it_is_still_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    first = await started(path, retention=5)
    sent = [(await first.publish(Draft("room", "ann", f"m{i}"))).message for i in range(12)]
    await first.close()
    with sqlite3.connect(path) as db:  # the file holds what the bus retains, not every message ever
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 5

    second = await started(path, retention=5)
    assert [m.id for m in (await second.history("room", None, 50)).messages] == [m.id for m in sent[-5:]]
    assert not (await second.history("room", sent[2].key, 50)).complete
    assert (await second.history("room", sent[7].key, 50)).complete
    await second.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_lost_data_file_is_a_lost_history_and_the_resume_says_so(tmp_path: Path) -> None:
    first = await started(tmp_path / "a.sqlite3")
    old = (await first.publish(Draft("room", "ann", "before"))).message
    await first.close()

    elsewhere = await started(tmp_path / "b.sqlite3")  # a new file: the history is gone
    await elsewhere.publish(Draft("room", "ann", "after"))
    assert not (await elsewhere.history("room", old.key, 50)).complete
    await elsewhere.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_room_freed_by_its_ttl_stays_freed_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    first = await started(path, room_ttl=0.2)
    old = (await first.publish(Draft("quiet", "ann", "hello"))).message

    async def freed() -> None:
        while first.room_count():
            await asyncio.sleep(0.05)  # the sweep runs every 0.05 s with this TTL

    await asyncio.wait_for(freed(), 5)
    await first.publish(Draft("busy", "ann", "commits the sweep's drop with it"))
    await first.close()
    second = await started(path)
    assert (await second.history("quiet", None, 50)).messages == []
    assert not (await second.history("quiet", old.key, 50)).complete
    await second.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_message_the_file_cannot_take_is_not_accepted(tmp_path: Path) -> None:
    store = MessageStore(str(tmp_path / "chat.sqlite3"))
    backend = MemoryBackend(100, 600.0, 0.0, store)
    await backend.start(_ignore)
    await backend.publish(Draft("room", "ann", "stored"))
    assert store._db is not None  # the process holds the file alone (exclusive locking): break it from inside
    store._db.execute("DROP TABLE messages")
    with pytest.raises(BusUnavailable):
        await backend.publish(Draft("room", "ann", "not stored", "c1"))
    assert [m.text for m in (await backend.history("room", None, 50)).messages] == ["stored"]
    await backend.close()


def test_an_unusable_data_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    result = subprocess.run(
        [sys.executable, "server.py", "--port", "0", "--data-file", str(tmp_path / "dir.sqlite3")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot use the data file" in result.stderr, result.stderr


def test_the_data_file_is_refused_with_redis() -> None:
    with pytest.raises(SettingsError, match="--data-file"):
        load_settings(["--data-file", "x.sqlite3", "--redis-url", "redis://127.0.0.1:1/0"], {})


# ---- a real server.py, restarted as make run restarts it ---------------------


def make_run_server(tmp_path: Path) -> ServerProcess:
    return ServerProcess(
        ["--data-file", str(tmp_path / "run" / "chat.sqlite3"), "--rate-limit", "0", "--log-format", "json"],
        tmp_path / "server.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET},
    )


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("how", ["sigterm", "crash"])
async def test_a_restarted_server_keeps_every_accepted_message(tmp_path: Path, how: str) -> None:
    server = await make_run_server(tmp_path).start()
    try:
        ann = await ChatClient.connect(server.port, "room", user="ann")
        for i in range(67):
            ann.send({"message": f"m{i}", "client_id": f"c{i}"})
        acks = [await ann.recv_type("ack", skip=("message", "presence", "join", "leave")) for _ in range(67)]
        ann.close()
        if how == "crash":
            server.kill()  # every acknowledged message was committed before its ack
            await server.start()
        else:
            await server.restart()

        fresh = await ChatClient.connect(server.port, "room", user="bob")
        assert [f["message"] for f in fresh.history] == [f"m{i}" for i in range(17, 67)]  # --history 50
        assert fresh.ready is not None and fresh.ready["last_id"] == acks[-1]["id"]
        resumed = await ChatClient.connect(server.port, "room", user="ann", since=acks[9]["id"])
        assert resumed.ready is not None and resumed.ready["complete"] is True
        assert ids(resumed.history) == [a["id"] for a in acks[10:]]
        resumed.send({"message": "after", "client_id": "new"})
        live = (await resumed.messages(1))[0]
        assert strictly_increasing([acks[-1]["id"], live["id"]])
        assert id_key(live["id"]) > IdKey(0, 0)
    finally:
        await server.stop()


def test_make_run_keeps_the_rooms_history_across_a_restart(tmp_path: Path) -> None:
    run_dir, port = tmp_path / "run", free_port()

    async def say(texts: list[str]) -> list[str]:
        client = await ChatClient.connect(port, "general", user="ann")
        for text in texts:
            client.send({"message": text})
        await client.messages(len(texts))
        shown = [frame["message"] for frame in client.history]
        client.close()
        return shown

    log = tmp_path / "make-run.log"
    first = start_make_run(run_dir, port, log)
    try:
        asyncio.run(say(["one", "two"]))
    finally:
        first.stop(signal.SIGINT)
    second = start_make_run(run_dir, port, log)
    try:
        assert asyncio.run(say(["three"])) == ["one", "two"]
    finally:
        second.stop(signal.SIGINT)
    assert (run_dir / "chat.sqlite3").stat().st_mode & 0o777 == 0o600  # the messages: the server's user alone


@pytest.mark.gen_test(timeout=30)
async def test_messages_published_while_the_journal_is_checkpointed_are_all_kept_in_order(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    backend = await started(path, retention=2000)
    store = backend._store
    assert store is not None
    checkpoints = 0
    real_checkpoint = store._checkpoint

    def counted() -> None:
        nonlocal checkpoints
        checkpoints += 1
        real_checkpoint()

    store._checkpoint = counted  # type: ignore[method-assign]
    store.checkpoint_every = 20

    async def writer(n: int) -> list[str]:
        return [(await backend.publish(Draft("room", f"u{n}", f"{n}:{i}"))).message.id for i in range(400)]

    written = await asyncio.gather(*(writer(n) for n in range(4)))
    assert checkpoints >= 5 and store.checkpoint_error is None
    await backend.close()
    again = await started(path, retention=2000)
    kept = (await again.history("room", None, 2000)).messages
    assert sorted(m.id for m in kept) == sorted(i for ids_ in written for i in ids_)
    assert strictly_increasing([m.id for m in kept])
    await again.close()


# ---- edits, deletions, bans and mutes: in the same file ---------------------


@pytest.mark.gen_test(timeout=20)
async def test_edits_and_deletions_are_kept_in_the_rooms_order_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    first = await started(path)
    a, b, c = [(await first.publish(Draft("room", "ann", text))).message for text in ("a", "b", "c")]
    # Two in one loop turn: the second waits for the end-of-turn commit with a message.
    edit, d = await asyncio.gather(
        first.change(ChangeDraft("room", "ann", "edit", a.id, "a2")), first.publish(Draft("room", "ann", "d"))
    )
    delete = await first.change(ChangeDraft("room", "ann", "delete", b.id))
    await first.close()
    with closing(sqlite3.connect(path)) as db:  # closed: the server holds the file alone (exclusive locking)
        assert db.execute("SELECT kind, target FROM changes ORDER BY ms, seq").fetchall() == [
            ("edit", a.id),
            ("delete", b.id),
        ]

    second = await started(path)
    now = await second.history("room", None, 50)
    assert [(m.id, m.text) for m in now.messages] == [(a.id, "a2"), (c.id, "c"), (d.message.id, "d")]
    assert now.last_id == delete.id and now.complete
    resumed = await second.history("room", c.key, 50)  # a reader who had a, b and c: the changes are events
    assert [(type(e).__name__, e.id) for e in resumed.messages] == [
        ("Change", edit.id),
        ("Message", d.message.id),
        ("Change", delete.id),
    ]
    with pytest.raises(ChangeRefused):  # deleted stays deleted: it cannot be edited after the restart
        await second.change(ChangeDraft("room", "ann", "edit", b.id, "back"))
    after = (await second.publish(Draft("room", "bob", "after"))).message
    assert after.key > delete.key
    await second.close()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("how", ["sigterm", "crash"])
async def test_a_restarted_server_keeps_edits_and_deletions(tmp_path: Path, how: str) -> None:
    server = await make_run_server(tmp_path).start()
    try:
        ann = await ChatClient.connect(server.port, "room", user="ann")
        sent = []
        for text in ("a", "b", "c"):
            await ann.say(text)
            sent.append((await ann.messages(1))[0])
        bob = await ChatClient.connect(server.port, "room", user="bob")
        seen = bob.history[-1]["id"]
        bob.drop()
        ann.send({"type": "edit", "id": sent[0]["id"], "message": "a2"})
        edited = await ann.recv_type("edited", skip=CHANGE_SKIP)
        ann.send({"type": "delete", "id": sent[1]["id"]})
        deleted = await ann.recv_type("deleted", skip=CHANGE_SKIP)
        ann.close()
        if how == "crash":
            server.kill()  # each change was committed before it was sent to anyone
            await server.start()
        else:
            await server.restart()

        fresh = await ChatClient.connect(server.port, "room", user="eve")
        assert [(f["message"], f.get("edited", False)) for f in fresh.history] == [("a2", True), ("c", False)]
        back = await ChatClient.connect(server.port, "room", user="bob", since=seen)
        assert [(f["type"], f["id"]) for f in back.history] == [("edited", edited["id"]), ("deleted", deleted["id"])]
        assert back.history[0]["message"] == "a2" and back.ready is not None and back.ready["complete"] is True
        back.send({"type": "edit", "id": sent[1]["id"], "message": "undeleted?"})
        refused = await back.recv_type("error", skip=CHANGE_SKIP)
        assert refused["error"] == "not_found"
        await back.say("after")
        live = (await back.messages(1))[0]
        assert id_key(live["id"]) > id_key(back.ready["last_id"]) >= id_key(sent[2]["id"])
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_ban_and_a_mute_survive_a_restart_until_they_end(tmp_path: Path) -> None:
    api_port = free_port()
    server = ServerProcess(
        ["--data-file", str(tmp_path / "chat.sqlite3"), "--rate-limit", "0", "--log-format", "json"]
        + ["--api-port", str(api_port)],
        tmp_path / "server.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET, "CHAT_API_KEYS": API_KEY},
    )
    await server.start()
    try:
        status, body = await call(api_port, "POST", "/api/users/rex/disconnect", {"room": "hall", "ban_seconds": 4})
        assert status == 200
        status, _ = await call(api_port, "POST", "/api/rooms/calm/mutes", {"user": "eve", "seconds": 600})
        assert status == 201
        await server.restart()

        status, listed = await call(api_port, "GET", "/api/rooms/hall/bans")
        assert status == 200 and [b["user"] for b in listed["bans"]] == ["rex"]
        refused = await ChatClient.connect(server.port, "hall", user="rex", join=False)
        assert await refused.wait_closed() == 4003
        eve = await ChatClient.connect(server.port, "calm", user="eve")
        await eve.say("hello?", client_id="m1")
        assert (await eve.recv_type("error"))["error"] == "muted"
        ends = body["ban"]["until"] / 1000
        while not await admitted(server.port, "hall", "rex"):  # polling joins, bounded by the ban's length
            assert time.time() < ends + 2, "still refused well after the ban ended"
            await asyncio.sleep(0.2)
        assert time.time() >= ends - 0.1  # not before it ended
        status, _ = await call(api_port, "DELETE", "/api/rooms/calm/mutes/eve")
        assert status == 200
        await server.restart()  # the lift is in the file too
        eve = await ChatClient.connect(server.port, "calm", user="eve")
        await eve.say("back")
        assert (await eve.messages(1))[0]["message"] == "back"
    finally:
        await server.stop()
