"""Joins into one room at once share its history read (bus/shared_reads.py), and still miss and double nothing.

The rule: a read in flight is never joined (it may predate a joiner's seat);
callers arriving meanwhile share the next one. First the rule on its own,
then a herd of resumes into one room on a real Redis, with messages
published while they join.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus.shared_reads import SharedReads
from tests.client import ChatClient
from tests.helpers import eventually

JOINERS = 40


@pytest.fixture
def backend() -> str:
    """The server of these tests runs on the Redis bus, where a read is a round trip."""
    return "redis"


@pytest.mark.gen_test(timeout=10)
async def test_callers_during_a_read_share_the_next_one_never_the_one_in_flight() -> None:
    reads = SharedReads[int]()
    started: list[asyncio.Event] = []  # one per read begun
    release: list[asyncio.Event] = []

    async def read() -> int:
        number = len(started)
        started.append(asyncio.Event())
        release.append(asyncio.Event())
        await release[number].wait()
        return number + 1  # which read this was

    first = asyncio.ensure_future(reads.read("room", read))
    await asyncio.sleep(0)  # the first read starts
    assert len(started) == 1
    later = [asyncio.ensure_future(reads.read("room", read)) for _ in range(5)]
    other = asyncio.ensure_future(reads.read("another room", read))
    await asyncio.wait_for(eventually_started(started, 2), 5)
    for _ in range(5):
        await asyncio.sleep(0)  # turns of the loop in which a wrong third read would start
    assert len(started) == 2  # only the other room's read started: the five wait for the first to end
    release[0].set()
    assert await asyncio.wait_for(first, 5) == 1
    await asyncio.wait_for(eventually_started(started, 3), 5)
    release[2].set()
    assert await asyncio.wait_for(asyncio.gather(*later), 5) == [3] * 5  # one read, after they asked
    release[1].set()
    assert await asyncio.wait_for(other, 5) == 2
    assert len(started) == 3


async def eventually_started(started: list[asyncio.Event], count: int) -> None:
    while len(started) < count:
        await asyncio.sleep(0)  # the next read is started by a callback of the one that ended


@pytest.mark.gen_test(timeout=60)
async def test_a_herd_of_resumes_shares_history_reads_and_gets_every_message_once(make_server: Any) -> None:
    server = await make_server(rate_limit=0, join_rate=0, client_rate_limit=0)
    writer = await ChatClient.connect(server.port, "herd", user="writer")
    for k in range(10):
        await writer.say(f"m{k}")
    sent = await writer.messages(10)
    writer.close()

    async def left() -> bool:
        return not server.bus.has_members_here("herd")

    await eventually(left, 10, "the room's last member gone")  # the herd then waits on one subscription
    backend = server.bus.backend
    reads: list[Any] = []
    history = backend.history

    async def counted(*args: Any) -> Any:
        reads.append(args)
        return await history(*args)

    backend.history = counted
    since = sent[4]["id"]

    async def talk() -> ChatClient:
        talker = await ChatClient.connect(server.port, "herd", user="talker")
        for k in range(20):  # published while the herd joins
            await talker.say(f"live{k}")
        return talker

    joining = [ChatClient.connect(server.port, "herd", since=since, user=f"u{k}") for k in range(JOINERS)]
    talker, *herd = await asyncio.gather(talk(), *joining)
    await talker.say("end")
    expected = [f"m{k}" for k in range(5, 10)] + [f"live{k}" for k in range(20)] + ["end"]
    for client in herd:
        replayed = [frame["message"] for frame in client.history]
        live: list[str] = []
        while not live or live[-1] != "end":
            live.append((await client.recv_type("message", skip=("presence", "join", "leave")))["message"])
        got = replayed + live
        assert got[: len(replayed)] == expected[: len(replayed)]
        assert sorted(got) == sorted(expected) and len(set(got)) == len(got), got  # none lost, none twice
        assert got == [m for m in expected if m in got]  # in the room's order
    assert len(reads) < JOINERS, f"{len(reads)} history reads for {JOINERS} joins"
