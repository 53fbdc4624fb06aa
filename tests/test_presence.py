"""Presence and typing (docs/protocol.md): on every bus backend, then across real processes on one Redis.

A negative ("no join for a second tab") is shown by order, never by waiting
a while: something that must produce a notice happens after the thing that
must not, and the next notice has to be the former. Where the server must
have finished with a close first, the test polls the member list a fresh
connection is given (as a user already present, which adds no notices).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bus.redis.keys import Keys
from tests.client import TIMEOUT, ChatClient
from tests.conftest import Spawn
from tests.helpers import ON_REDIS, eventually
from tests.services import RedisServer

users_key = Keys().users

Frame = dict[str, Any]


# ---- helpers -----------------------------------------------------------------


def listed(frame: Frame) -> dict[str, int]:
    """A presence frame's members as {user: connections}, checking they come sorted by user."""
    assert frame["type"] == "presence", frame
    users = [member["user"] for member in frame["members"]]
    assert users == sorted(users), users
    return {member["user"]: member["connections"] for member in frame["members"]}


async def enter(port: int, room: str, user: str) -> tuple[ChatClient, dict[str, int]]:
    """Join as ``user``; the client and the presence list that must come right after ``ready``."""
    client = await ChatClient.connect(port, room, user=user)
    return client, listed(await client.recv())


async def membership(client: ChatClient, timeout: float = TIMEOUT) -> tuple[str, str]:
    """The next join or leave notice as (type, user); messages, typing and presence lists pass by."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.recv(max(0.0, deadline - time.monotonic()))
        if frame["type"] in ("join", "leave"):
            return frame["type"], frame["user"]
        assert frame["type"] in ("message", "typing", "presence"), frame


async def typists(client: ChatClient, until: str) -> list[str]:
    """The users of the typing notices a client gets, up to and including one from ``until``."""
    users: list[str] = []
    while not users or users[-1] != until:
        frame = await client.recv()
        assert frame["type"] != "error", frame
        if frame["type"] == "typing":
            users.append(frame["user"])
    return users


async def listed_when(port: int, room: str, user: str, expected: dict[str, int], timeout: float = 10.0) -> None:
    """Poll the list a new connection of ``user`` (already in the room: no notices) gets, until it is ``expected``."""
    deadline = time.monotonic() + timeout
    while True:
        client, members = await enter(port, room, user)
        client.close()
        if members == expected:
            return
        assert time.monotonic() < deadline, f"{members} is not {expected} after {timeout}s"


# ---- on every backend --------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_presence_after_ready_lists_everyone_with_their_connection_counts(make_server: Any) -> None:
    server = await make_server(rate_limit=0)
    ann, first = await enter(server.port, "lounge", "ann")
    assert first == {"ann": 1}
    _, second_tab = await enter(server.port, "lounge", "ann")
    assert second_tab == {"ann": 2}

    flood = [f"m{k}" for k in range(300)]
    for text in flood:  # still arriving while bob joins
        await ann.say(text)
    bob = await ChatClient.connect(server.port, "lounge", user="bob")
    # Right after the replay and ready, before any live message that came during the join.
    assert listed(await bob.recv()) == {"ann": 2, "bob": 1}
    live = await bob.messages(len(flood) - len(bob.history))
    assert [f["message"] for f in bob.history + live] == flood  # and the messages lost nothing
    _, elsewhere = await enter(server.port, "other_room", "eve")
    assert elsewhere == {"eve": 1}


@pytest.mark.gen_test(timeout=30)
async def test_join_and_leave_follow_a_users_first_and_last_connection(make_server: Any) -> None:
    server = await make_server()
    carl, _ = await enter(server.port, "doors", "carl")
    ann, _ = await enter(server.port, "doors", "ann")
    assert await membership(carl) == ("join", "ann")

    second_tab, members = await enter(server.port, "doors", "ann")
    assert members == {"ann": 2, "carl": 1}
    bob, _ = await enter(server.port, "doors", "bob")
    # Had the second tab sent a join, it would have come before bob's.
    assert await membership(carl) == ("join", "bob")
    for tab in (ann, second_tab):  # nor does ann hear of her own comings
        assert await membership(tab) == ("join", "bob")

    ann.close()  # one of two tabs: ann is still in the room
    await listed_when(server.port, "doors", "carl", {"ann": 1, "bob": 1, "carl": 2})
    bob.close()
    assert await membership(carl) == ("leave", "bob")  # no leave of ann before it
    second_tab.drop()  # her last connection is lost, not closed
    assert await membership(carl) == ("leave", "ann")


@pytest.mark.gen_test(timeout=30)
async def test_typing_reaches_the_other_users_at_most_once_a_second(make_server: Any) -> None:
    server = await make_server()
    ann, _ = await enter(server.port, "keys", "ann")
    ann_tab, _ = await enter(server.port, "keys", "ann")
    bob, _ = await enter(server.port, "keys", "bob")
    carl, _ = await enter(server.port, "keys", "carl")

    for _ in range(5):
        ann.send({"typing": True})
    await ann.say("after typing")
    await ann.recv_type("message")  # her frames are all handled (the extras without an error frame)
    bob.send({"typing": True})  # comes after anything ann's typing caused
    assert await typists(carl, until="bob") == ["ann", "bob"]  # five sent, one told
    assert await typists(ann_tab, until="bob") == ["bob"]  # not to the typist, on any of her tabs
    assert await typists(ann, until="bob") == ["bob"]

    # Typing on and on: ann's notices come a second apart.
    arrivals: list[float] = []
    deadline = time.monotonic() + 5
    while len(arrivals) < 2:
        assert time.monotonic() < deadline, f"ann's typing notices: {arrivals}"
        ann.send({"typing": True})
        try:
            frame = await carl.recv(timeout=0.05)  # also paces the typing
        except asyncio.TimeoutError:
            continue
        if frame["type"] == "typing" and frame["user"] == "ann":
            arrivals.append(time.monotonic())
    # At most one a second (docs/protocol.md); the upper bound only shows typing is not held up for long.
    assert 0.9 <= arrivals[1] - arrivals[0] <= 3.0, arrivals

    # Not stored, not replayed: someone joining now hears of no typing.
    dave, _ = await enter(server.port, "keys", "dave")
    await bob.say("marker")
    frame = await dave.recv()
    assert (frame["type"], frame.get("message")) == ("message", "marker")


# ---- Redis: a restart, several processes, a process killed ------------------


@pytest.mark.gen_test(timeout=30)
@ON_REDIS
async def test_after_redis_comes_back_empty_the_members_are_listed_again(make_server: Any, tmp_path: Path) -> None:
    own_redis = RedisServer(tmp_path / "redis")
    own_redis.start()
    try:
        server = await make_server(redis_url=own_redis.url(), presence_timeout=0.4)  # upkeep every 0.1 s
        ann, _ = await enter(server.port, "phoenix", "ann")
        view = {"ann": 1}
        with capture_logs() as logs:
            # Off the event loop: the server, on this loop, lives through the outage meanwhile.
            await asyncio.to_thread(own_redis.kill)

            async def outage_noticed() -> bool:
                events = {entry["event"] for entry in logs}
                return {"bus.error", "presence.error"} <= events

            await eventually(outage_noticed, 10, "the bus and presence notice that Redis is gone")
            await asyncio.to_thread(own_redis.start)  # same port, nothing kept

            async def ready() -> bool:
                return server.bus.unavailable_reason() is None

            await eventually(ready, 10, "the bus is back")
            async with aioredis.Redis.from_url(own_redis.url(), decode_responses=True) as direct:

                async def ann_is_back() -> bool:
                    return await direct.hgetall(users_key("phoenix")) == {"ann": "1"}

                await eventually(ann_is_back, 10, "ann registered again")
            bob, members = await enter(server.port, "phoenix", "bob")
            assert members == {"ann": 1, "bob": 1}
            # ann hears of bob: by his join, or by the whole list her node
            # sends once it listens again (whichever came after the other).
            while "bob" not in view:
                frame = await ann.recv()
                if frame["type"] == "presence":
                    view = listed(frame)
                elif frame["type"] == "join":
                    view[frame["user"]] = 1
            assert view == {"ann": 1, "bob": 1}
        events = [entry["event"] for entry in logs]
        for outcome in ("bus.error", "bus.recovered", "presence.error", "presence.recovered"):
            assert events.count(outcome) == 1, (outcome, events)  # once per outage
    finally:
        own_redis.kill()


@pytest.mark.gen_test(timeout=30)
@ON_REDIS
async def test_a_presence_failure_fails_no_join_and_no_message_and_heals(make_server: Any, redis_db: str) -> None:
    server = await make_server(presence_timeout=0.4)  # upkeep every 0.1 s
    async with aioredis.Redis.from_url(redis_db, decode_responses=True) as direct:
        await direct.set(users_key("broken"), "not a hash")  # every presence call on the room fails
        with capture_logs() as logs:
            ann, members = await enter(server.port, "broken", "ann")
            assert members == {"ann": 1}  # at least this node's own members
            bob, members = await enter(server.port, "broken", "bob")
            assert members == {"ann": 1, "bob": 1}
            await bob.say("still flowing")
            assert [frame["message"] for frame in await ann.messages(1)] == ["still flowing"]
            assert server.bus.unavailable_reason() is None  # /readyz: messages are fine

            await direct.delete(users_key("broken"))

            async def registered_again() -> bool:
                return await direct.hgetall(users_key("broken")) == {"ann": "1", "bob": "1"}

            await eventually(registered_again, 5, "ann and bob registered once Redis takes it")
        events = [entry["event"] for entry in logs]
        assert events.count("presence.error") == 1 and events.count("presence.recovered") == 1
        assert "bus.error" not in events


@pytest.mark.gen_test(timeout=60)
async def test_presence_joins_leaves_and_typing_span_processes(spawn: Spawn, redis_db: str) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db)
    ann, members = await enter(one.port, "plaza", "ann")
    assert members == {"ann": 1}
    bob, members = await enter(two.port, "plaza", "bob")
    assert members == {"ann": 1, "bob": 1}
    assert await membership(ann) == ("join", "bob")

    ann_on_two, members = await enter(two.port, "plaza", "ann")  # her second connection, on the other process
    assert members == {"ann": 2, "bob": 1}
    bob.send({"typing": True})
    assert await typists(ann, until="bob") == ["bob"]
    assert await typists(ann_on_two, until="bob") == ["bob"]
    ann_on_two.send({"typing": True})
    assert await typists(bob, until="ann") == ["ann"]

    ann.close()  # still there through the other process
    await listed_when(one.port, "plaza", "bob", {"ann": 1, "bob": 2})
    carl, _ = await enter(one.port, "plaza", "carl")
    assert await membership(bob) == ("join", "carl")  # no leave of ann before it
    ann_on_two.close()
    assert await membership(bob) == ("leave", "ann")
    assert await membership(carl) == ("leave", "ann")


@pytest.mark.gen_test(timeout=60)
async def test_the_members_of_a_killed_process_leave_within_presence_timeout(spawn: Spawn, redis_db: str) -> None:
    timeout = 2.0
    one = await spawn("n1", redis_db, "--presence-timeout", str(timeout))
    two = await spawn("n2", redis_db, "--presence-timeout", str(timeout))
    carl, _ = await enter(two.port, "crash", "carl")
    await enter(one.port, "crash", "ann")
    await enter(one.port, "crash", "bob")
    _, members = await enter(two.port, "crash", "bob")  # bob is on both processes
    assert members == {"ann": 1, "bob": 2, "carl": 1}
    assert [await membership(carl), await membership(carl)] == [("join", "ann"), ("join", "bob")]

    one.kill()  # SIGKILL: nothing of n1's is cleaned up by n1
    killed_at = time.monotonic()
    assert await membership(carl, timeout=timeout + 5) == ("leave", "ann")
    # Gone within the timeout plus a heartbeat or two, not at once (n1 could not say it was going).
    assert timeout - 0.5 <= time.monotonic() - killed_at <= timeout + 2.5
    _, members = await enter(two.port, "crash", "dave")
    assert members == {"bob": 1, "carl": 1, "dave": 1}
    assert await membership(carl) == ("join", "dave")  # bob, still on n2, did not leave


@pytest.mark.gen_test(timeout=60)
async def test_a_process_restarted_under_its_node_id_takes_its_old_members_out_at_start(
    spawn: Spawn, redis_db: str
) -> None:
    one, two = await spawn("n1", redis_db), await spawn("n2", redis_db)  # presence_timeout: the default 30 s
    carl, _ = await enter(two.port, "again", "carl")
    await enter(one.port, "again", "ann")
    assert await membership(carl) == ("join", "ann")

    one.kill()
    restarted_at = time.monotonic()
    await one.start()  # same port, same node id; ann's connection died with the old process
    assert await membership(carl, timeout=10) == ("leave", "ann")
    assert time.monotonic() - restarted_at < 10  # far sooner than the 30 s timeout
    _, members = await enter(one.port, "again", "dave")
    assert members == {"carl": 1, "dave": 1}
