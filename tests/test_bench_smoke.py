"""The benchmark's smoke run: a short multi-room burst through a real server.py, nothing lost or duplicated.

The full benchmark (bench/run.py) needs the shared harness and takes most of an
hour; this is the part of it that `make test` keeps checked: 5 rooms x 4
clients, every client a sender, 300 messages sent in bursts, against a
``server.py`` subprocess on the in-process bus and on a real redis-server.
Every member of a room must receive every message of the room exactly once, and
all members in the same order. Nothing here is timed beyond the deadlines that
keep a broken run from hanging.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.client import NOTICES, TEST_SECRET, ChatClient, strictly_increasing
from tests.processes import ServerProcess

ROOMS = 5
CLIENTS = 4
PER_CLIENT = 15  # 5 x 4 x 15 = 300 messages, 1,200 deliveries
BURST = 5  # a client's messages go out BURST at a time, without waiting for their echoes
DEADLINE = 10.0  # s for one member to see its room's messages and the end marker
SKIP = NOTICES + ("ack",)


@pytest.fixture(params=["memory", "redis"])
def server_args(request: pytest.FixtureRequest) -> list[str]:
    # The test's clients all come from 127.0.0.1 and send in bursts: the per-address limits are off, as in bench/.
    args = ["--rate-limit", "0", "--client-rate-limit", "0", "--max-connections-per-client", "1000"]
    if request.param == "redis":
        args += ["--redis-url", request.getfixturevalue("redis_db")]
    return args


async def read_room(client: ChatClient, room: int) -> list[dict[str, Any]]:
    """Message frames until every message of the room has arrived once, or the deadline (a loss) has passed."""
    wanted = CLIENTS * PER_CLIENT
    frames: list[dict[str, Any]] = []
    seen: set[str] = set()
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while len(seen) < wanted:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            frame = await client.recv_type("message", left, SKIP)
        except asyncio.TimeoutError:
            break
        frames.append(frame)
        seen.add(frame["message"])
    return frames


async def read_to_marker(client: ChatClient, marker: str) -> list[dict[str, Any]]:
    """Message frames that arrive before the marker: after a complete room, any is a duplicate."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = await client.recv_type("message", DEADLINE, SKIP)
        if frame["message"] == marker:
            return frames
        frames.append(frame)


async def send_bursts(client: ChatClient, room: int, member: int) -> None:
    for seq in range(PER_CLIENT):
        await client.say(f"r{room}:c{member}:{seq}")
        if seq % BURST == BURST - 1:
            await asyncio.sleep(0)  # let the other clients' bursts interleave with this one's


def check_room(room: int, received: list[list[dict[str, Any]]]) -> None:
    expected = Counter(f"r{room}:c{member}:{seq}" for member in range(CLIENTS) for seq in range(PER_CLIENT))
    first = [frame["message"] for frame in received[0]]
    for member, frames in enumerate(received):
        texts = [frame["message"] for frame in frames]
        got = Counter(texts)
        lost = sorted((expected - got).elements())
        duplicated = sorted((got - expected).elements())
        assert not lost and not duplicated, f"room {room} member {member}: lost {lost[:5]}, extra {duplicated[:5]}"
        assert texts == first, f"room {room}: member {member} saw another order than member 0"
        assert strictly_increasing([frame["id"] for frame in frames]), f"room {room} member {member}: ids out of order"
    for member in range(CLIENTS):
        # One connection's messages keep their order (each sender's seq only grows).
        seqs = [int(text.rsplit(":", 1)[1]) for text in first if text.startswith(f"r{room}:c{member}:")]
        assert seqs == sorted(seqs), f"room {room}: sender {member}'s messages reordered"


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_in_many_rooms_reaches_every_member_once_in_one_order(
    server_args: list[str], tmp_path: Path
) -> None:
    process = ServerProcess(
        [*server_args, "--log-format", "json"], tmp_path / "server.log", env={"CHAT_COOKIE_SECRET": TEST_SECRET}
    )
    await process.start()
    clients: list[list[ChatClient]] = []
    try:
        for room in range(ROOMS):
            clients.append([await ChatClient.connect(process.port, f"smoke{room}") for _ in range(CLIENTS)])
        readers = [[asyncio.ensure_future(read_room(c, room)) for c in members] for room, members in enumerate(clients)]
        await asyncio.gather(
            *(send_bursts(c, room, member) for room, members in enumerate(clients) for member, c in enumerate(members))
        )
        received = [await asyncio.gather(*room_readers) for room_readers in readers]
        # A marker through each room, sent once every member has had all of its messages: whatever arrives
        # before it is a late duplicate.
        for room, members in enumerate(clients):
            await members[0].say(f"end{room}")
        for room, members in enumerate(clients):
            late = await asyncio.gather(*(read_to_marker(c, f"end{room}") for c in members))
            check_room(room, [frames + extra for frames, extra in zip(received[room], late)])
    finally:
        for members in clients:
            for c in members:
                c.close()
        await process.stop()
