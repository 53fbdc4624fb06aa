"""``--data-file``'s group commit: the writes of a short window are one commit, acknowledged after it.

A real ``server.py`` with a data file: a message whose ``ack`` has arrived is
in the file, even when the server is killed (SIGKILL) the moment the ack is
read; and waiting for the window's commit keeps an ack prompt on an idle
server (its timer commits a lone message: no later message is needed).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from bus.memory import MemoryBackend
from bus.memory_store import MessageStore
from bus.message import Draft, Entry
from tests.client import NOTICES, TEST_SECRET, ChatClient
from tests.processes import ServerProcess

IDLE_ACK_BOUND = 0.050  # seconds: a 5 ms window plus a loaded test machine's scheduling, far below a user's notice
SKIP = NOTICES + ("message",)


def data_file_server(tmp_path: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        ["--data-file", str(tmp_path / "chat.sqlite3"), "--rate-limit", "0", "--log-format", "json", *args],
        tmp_path / "server.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET},
    )


@pytest.mark.gen_test(timeout=60)
async def test_a_message_acknowledged_under_group_commit_survives_a_sigkill_right_after_its_ack(tmp_path: Path) -> None:
    # A wide window (200 ms): were an ack sent before its commit, the kill would land inside the window.
    server = await data_file_server(tmp_path, "--commit-window", "200").start()
    try:
        ann = await ChatClient.connect(server.port, "room", user="ann")
        for i in range(5):  # one burst: one window, one commit
            ann.send({"message": f"m{i}", "client_id": f"c{i}"})
        ack = await ann.recv_type("ack", skip=SKIP)
        server.kill()  # at once: no other frame read, no grace
        await server.start()

        bob = await ChatClient.connect(server.port, "room", user="bob")
        kept = {frame["id"]: frame["message"] for frame in bob.history}
        assert kept.get(ack["id"]) == "m0", kept
        assert list(kept.values()) == [f"m{i}" for i in range(len(kept))]  # nothing later without what came before
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_message_on_an_idle_server_is_acknowledged_within_50_ms(tmp_path: Path) -> None:
    server = await data_file_server(tmp_path).start()  # the default window
    try:
        ann = await ChatClient.connect(server.port, "room", user="ann")
        waits = []
        for i in range(7):  # one at a time: each message is alone in its window
            sent = time.monotonic()
            ann.send({"message": f"m{i}", "client_id": f"c{i}"})
            ack = await ann.recv_type("ack", timeout=5.0, skip=SKIP)
            waits.append(time.monotonic() - sent)
            assert ack["client_id"] == f"c{i}"
        assert statistics.median(waits) < IDLE_ACK_BOUND, waits
    finally:
        await server.stop()


@pytest.mark.gen_test(timeout=20)
async def test_no_member_gets_a_message_before_the_file_holds_it(tmp_path: Path) -> None:
    store = MessageStore(str(tmp_path / "chat.sqlite3"), window=0.2)  # wide: an early delivery cannot hide
    seen: list[tuple[str, bool]] = []

    def deliver(entries: list[Entry]) -> None:
        db = store._db  # one connection (exclusive locking): what it has committed is what a restart reads
        assert db is not None
        for entry in entries:
            rows = db.execute("SELECT count(*) FROM messages WHERE text = ?", (entry.text,)).fetchone()[0]
            seen.append((entry.text, rows == 1 and not db.in_transaction))

    backend = MemoryBackend(100, 600.0, 0.0, store)
    await backend.start(deliver)
    await backend.subscribe("room")
    published = await asyncio.gather(*(backend.publish(Draft("room", "ann", f"m{i}")) for i in range(3)))
    assert [p.message.text for p in published] == ["m0", "m1", "m2"]
    assert seen == [("m0", True), ("m1", True), ("m2", True)]  # each delivered, each committed first
    await backend.close()
