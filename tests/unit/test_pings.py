"""handlers/pings.py: one timer pings every room socket; a socket that answers stays, one that does not is closed."""

from __future__ import annotations

import asyncio
from typing import Callable

from handlers.pings import PingWheel

INTERVAL = 0.08  # short, so the wheel turns several times within a test; nothing below depends on speed
DEADLINE = 10.0  # seconds to wait for a condition on a loaded machine


class FakeSocket:
    def __init__(self, answers: bool) -> None:
        self.ping_slot = -1
        self.ping_awaiting = False
        self.answers = answers
        self.gone = False
        self.pings = 0
        self.timed_out = 0
        self._pong = False

    def send_ping(self) -> bool:
        if self.gone:
            return False
        self.pings += 1
        self._pong = self.answers  # a client that answers does so before the deadline
        return True

    def pong_received(self) -> bool:
        return self._pong

    def ping_timed_out(self) -> None:
        self.timed_out += 1


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(INTERVAL / 4)


def test_a_socket_that_answers_is_pinged_again_and_again_and_one_that_does_not_is_closed_once() -> None:
    async def scenario() -> None:
        wheel = PingWheel(INTERVAL, INTERVAL)
        answering, silent = FakeSocket(answers=True), FakeSocket(answers=False)
        wheel.add(answering)
        wheel.add(silent)
        await until(lambda: silent.timed_out == 1 and answering.pings >= 4)
        assert silent.pings == 1 and answering.timed_out == 0
        assert len(wheel) == 1  # the closed one is no longer walked, the live one waits in a slot
        wheel.discard(answering)
        assert len(wheel) == 0 and answering.ping_slot == -1
        wheel.stop()

    asyncio.run(scenario())


def test_without_a_timeout_pings_go_on_and_nobody_is_closed() -> None:
    async def scenario() -> None:
        wheel = PingWheel(INTERVAL, 0)
        silent = FakeSocket(answers=False)
        wheel.add(silent)
        await until(lambda: silent.pings >= 3)
        assert silent.timed_out == 0
        wheel.stop()
        assert len(wheel) == 0

    asyncio.run(scenario())


def test_a_socket_gone_before_its_ping_leaves_the_wheel() -> None:
    async def scenario() -> None:
        wheel = PingWheel(INTERVAL, INTERVAL)
        gone = FakeSocket(answers=True)
        gone.gone = True
        wheel.add(gone)
        await until(lambda: len(wheel) == 0)
        assert gone.pings == 0 and gone.timed_out == 0

    asyncio.run(scenario())


def test_the_timeout_is_never_longer_than_the_interval_as_in_tornado() -> None:
    assert PingWheel(5, 20).timeout == 5 and PingWheel(20, 5).timeout == 5
    assert not PingWheel(0, 20).enabled


class ClockedWheel(PingWheel):
    """The wheel on a clock the test moves: its timer is never waited for, ``advance`` walks the due slots."""

    def __init__(self, interval: float, timeout: float) -> None:
        super().__init__(interval, timeout)
        self.now = 0.0

    def _now_slot(self) -> int:
        return int(self.now // self.tick)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._walk()


def test_on_a_fake_clock_a_silent_socket_is_closed_just_after_its_timeout_and_an_answering_one_never() -> None:
    async def scenario() -> None:
        wheel = ClockedWheel(interval=20.0, timeout=10.0)  # the real timer (a tick of 1 s) never fires here
        answering, silent = FakeSocket(answers=True), FakeSocket(answers=False)
        wheel.add(answering)
        wheel.add(silent)
        wheel.advance(19.0)
        assert silent.pings == answering.pings == 0  # never early
        wheel.advance(3.0)  # the first ping, at most two ticks late
        assert silent.pings == answering.pings == 1 and silent.timed_out == 0
        wheel.advance(9.0)  # within the timeout: not yet
        assert silent.timed_out == 0
        wheel.advance(3.0)  # past it
        assert silent.timed_out == 1 and answering.timed_out == 0
        for _ in range(10):
            wheel.advance(5.0)
        assert answering.pings >= 3 and answering.timed_out == 0 and silent.pings == 1
        wheel.stop()

    asyncio.run(scenario())
