"""The memory growth attack of the second hostile-client audit, as a reusable driver.

Connections from one address, each sending long messages (16 KB) with a
client_id and waiting for the answer (so each stays within what the server
lets it send), and moving to a new room every ``per_room`` messages, so that
no per-room bound alone stops the growth. A bystander writes a short message
to a room of its own every ``bystander_every`` seconds. ``sample`` is read
every ``sample_every`` seconds (RSS of the server, Redis's used_memory) and
its largest value kept.

Used by tests/test_memory_bounds.py (a few seconds, faster than the audit's
rate) and bench/memory_growth.py (the audit's 60 s at its rate).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.client import ChatClient

TEXT = "\U0001f600" * 3999  # 15,996 bytes of UTF-8 (the longest text is 4,096 code points); 64 fit in 1 MiB


@dataclass
class Refused:
    room: str
    user: str
    client_id: str
    text: str


@dataclass
class Attack:
    port: int
    connections: int = 5
    per_room: int = 64
    rate: float = 0.0  # messages per second per connection; 0: as fast as the answers come
    bystander_every: float = 0.5
    sample: Callable[[], float] | None = None
    sample_every: float = 0.2
    acked: dict[str, list[str]] = field(default_factory=dict)  # room -> ids acked, in order
    refused: list[Refused] = field(default_factory=list)  # answered unavailable
    closed: list[str] = field(default_factory=list)  # a connection the server closed, and why
    bystander: list[str] = field(default_factory=list)  # the bystander's acked ids
    samples: list[float] = field(default_factory=list)
    refused_pause: float = 0.05  # seconds an attacker waits after an unavailable answer
    joins_refused: int = 0
    stop_after_refusals: int = 0  # stop once this many were refused (0: run for the whole duration)
    stop_after_accepted: int = 0  # stop once this many were accepted (0: run for the whole duration)
    accepted: int = 0

    async def run(self, seconds: float) -> None:
        self._stop = asyncio.Event()
        self._deadline = time.monotonic() + seconds
        tasks = [asyncio.ensure_future(self._attacker(k)) for k in range(self.connections)]
        tasks.append(asyncio.ensure_future(self._bystand()))
        if self.sample is not None:
            tasks.append(asyncio.ensure_future(self._sampler()))
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
        finally:
            self._stop.set()
            for task in tasks:
                task.cancel()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _note_refused(self, refused: Refused) -> None:
        self.refused.append(refused)
        if self.stop_after_refusals and len(self.refused) >= self.stop_after_refusals:
            self._stop.set()

    async def _attacker(self, k: int) -> None:
        user, sent, room_number = f"grower{k}", 0, 0
        while self._running():
            room = f"grow{k}x{room_number}"
            try:
                client = await ChatClient.connect(self.port, room, user=user)
            except (ConnectionError, AssertionError, asyncio.TimeoutError):
                # A full Redis cannot make the new room's consumer group: the join is refused; try again.
                self.joins_refused += 1
                with _suppress_timeout():
                    await asyncio.wait_for(self._stop.wait(), 0.2)  # pacing, not a sync
                continue
            try:
                for n in range(self.per_room):
                    if not self._running():
                        return
                    started = time.monotonic()
                    client_id = f"{room}-{n}"
                    text = f"{n:03d}{TEXT}"
                    answer = await send(client, text, client_id)
                    if answer["type"] == "ack":
                        self.acked.setdefault(room, []).append(answer["id"])
                        self.accepted += 1
                        if self.stop_after_accepted and self.accepted >= self.stop_after_accepted:
                            self._stop.set()
                    else:
                        assert answer["error"] == "unavailable", answer
                        self._note_refused(Refused(room, user, client_id, text))
                        with _suppress_timeout():  # a client waits a little before its next try
                            await asyncio.wait_for(self._stop.wait(), self.refused_pause)
                    sent += 1
                    if self.rate:
                        await asyncio.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))  # pacing
            except ConnectionError as closed:
                self.closed.append(str(closed))
                return
            finally:
                client.close()
            room_number += 1

    async def _bystand(self) -> None:
        client = await ChatClient.connect(self.port, "bystander", user="bystander")
        try:
            n = 0
            while self._running():
                answer = await send(client, f"still here {n}", f"b{n}")
                if answer["type"] == "ack":
                    self.bystander.append(answer["id"])
                n += 1
                with _suppress_timeout():
                    await asyncio.wait_for(self._stop.wait(), self.bystander_every)  # pacing, not a sync
        finally:
            client.close()

    async def _sampler(self) -> None:
        assert self.sample is not None
        while self._running():
            self.samples.append(self.sample())
            with _suppress_timeout():
                await asyncio.wait_for(self._stop.wait(), self.sample_every)


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is asyncio.TimeoutError


async def send(client: ChatClient, text: str, client_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send one message; its ack or error, past the room's other frames."""
    await client.say(text, client_id=client_id)
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
            return frame


def rss_bytes(pid: int) -> int:
    """The resident set of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
