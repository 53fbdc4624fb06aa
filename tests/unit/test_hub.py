"""The room hub (RoomBus) over the real in-process backend, with plain members that record frames.

No sockets: a member is anything with ``send_frame``. The backend is the real
MemoryBackend (the one a single process serves with), so join, history,
fan-out and presence run their production path, only faster to observe. The
few failure tests replace one backend method with one that raises
BusUnavailable, the error a Redis outage gives (the outage itself is shown
end to end by tests/test_redis_bus.py against a stopped redis-server).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

import bus.room_bus as room_bus
from bus.backend import BusUnavailable, Deliver, Notify
from bus.memory import MemoryBackend
from bus.message import Draft, IdKey, Message, Notice, id_key
from bus.room_bus import TYPING_EVERY, RoomBus

Frame = dict[str, Any]


class Member:
    """Records every frame the hub hands it, decoded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[Frame] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(json.loads(frame))

    def kinds(self) -> list[str]:
        return [frame["type"] for frame in self.frames]

    def texts(self) -> list[str]:
        return [frame["message"] for frame in self.frames if frame["type"] == "message"]

    def take(self) -> list[Frame]:
        frames, self.frames = self.frames, []
        return frames


JOINER = contextvars.ContextVar("joiner", default="")  # context a connection binds (its conn, user)


class Backend(MemoryBackend):
    """The in-process backend, keeping its callbacks so a test can deliver again (at-least-once),
    and noting what the hub asked of it."""

    deliver: Deliver
    notify: Notify

    def __init__(self, retention: int, resend_window: float) -> None:
        super().__init__(retention, resend_window)
        self.subscribed: list[tuple[str, str]] = []  # (room, the joiner context seen by subscribe)
        self.unsubscribed: list[str] = []
        self.once_per: list[float] = []

    async def start(self, deliver: Deliver, notify: Notify | None = None) -> None:
        assert notify is not None
        self.deliver, self.notify = deliver, notify
        await super().start(deliver, notify)

    async def subscribe(self, room: str) -> None:
        self.subscribed.append((room, JOINER.get()))
        await super().subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        self.unsubscribed.append(room)
        await super().unsubscribe(room)

    async def announce(self, notice: Notice, once_per: float) -> bool:
        self.once_per.append(once_per)
        return await super().announce(notice, once_per)


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float]] = []

    def delivered(self, room: str, recipients: int, age_seconds: float) -> None:
        self.calls.append((room, recipients, age_seconds))


Scenario = Callable[[RoomBus, Backend], Awaitable[None]]


def run(scenario: Scenario, history: int = 50, retention: int = 100, observer: Observer | None = None) -> None:
    async def main() -> None:
        backend = Backend(retention=retention, resend_window=600)
        bus = RoomBus(backend, history, observer=observer)
        await bus.start()
        try:
            await scenario(bus, backend)
        finally:
            await bus.close()

    asyncio.run(asyncio.wait_for(main(), 5))


async def settle() -> None:
    """Let the backend's scheduled deliveries (call_soon) run: a few loop turns, no time."""
    for _ in range(5):
        await asyncio.sleep(0)


async def enter(bus: RoomBus, room: str, member: Member, since: IdKey | None = None) -> list[Message]:
    """Join and go live as the room socket does; the replayed history."""
    history = await bus.join(room, member, member.name, since)
    bus.go_live(room, member)
    return history.messages


async def say(bus: RoomBus, room: str, user: str, text: str, client_id: str | None = None) -> Message:
    return (await bus.publish(Draft(room, user, text, client_id))).message


def presence(*members: tuple[str, int]) -> Frame:
    return {"type": "presence", "members": [{"user": user, "connections": n} for user, n in members]}


# ---- messages ---------------------------------------------------------------------


def test_a_message_reaches_every_member_of_its_room_once_in_order_and_no_one_else() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann, bob, eve = Member("ann"), Member("bob"), Member("eve")
        for member, room in ((ann, "r"), (bob, "r"), (eve, "other")):
            await enter(bus, room, member)
        for member in (ann, bob, eve):
            member.take()
        sent = [await say(bus, "r", "ann", f"m{k}") for k in range(5)]
        await settle()
        for member in (ann, bob):
            frames = member.take()
            assert [f["id"] for f in frames] == [m.id for m in sent]
            assert frames[0] == {
                "type": "message",
                "id": sent[0].id,
                "room": "r",
                "user": "ann",
                "message": "m0",
                "ts": sent[0].ts,
            }
        assert eve.frames == []
        assert bus.room_count() == 2

    run(scenario)


def test_a_redelivered_or_older_message_is_dropped() -> None:
    """The backend delivers at least once; members see each message once."""

    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann = Member("ann")
        await enter(bus, "r", ann)
        first, second = await say(bus, "r", "ann", "a"), await say(bus, "r", "ann", "b")
        await settle()
        assert ann.texts() == ["a", "b"]
        backend.deliver([first, second])  # again, as a restarted node may
        backend.deliver([first])
        assert ann.texts() == ["a", "b"]
        third = await say(bus, "r", "ann", "c")
        await settle()
        backend.deliver([third])
        assert ann.texts() == ["a", "b", "c"]

    run(scenario)


def test_the_observer_hears_each_fan_out_with_its_recipients() -> None:
    observer = Observer()

    async def scenario(bus: RoomBus, backend: Backend) -> None:
        for name in ("ann", "bob", "carl"):
            await enter(bus, "r", Member(name))
        await bus.join("r", Member("joining"), "dave", None)  # not live yet: buffered, not counted
        await say(bus, "r", "ann", "hi")
        await settle()
        [(room, recipients, age)] = observer.calls
        assert (room, recipients) == ("r", 3) and 0 <= age < 5
        stale = Message("1-0", "r", "ann", "old")  # older than what everyone has
        backend.deliver([stale])
        assert observer.calls[-1][:2] == ("r", 0)
        backend.deliver([Message("9999999999999-0", "nobody_here", "ann", "x")])
        assert len(observer.calls) == 2  # a room without members here is not fanned out

    run(scenario, observer=observer)


# ---- join: history, ready position, and what arrives meanwhile ------------------------


def test_join_replays_the_last_history_messages_and_resumes_after_since() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        sent = [await say(bus, "r", "ann", f"m{k}") for k in range(5)]
        late = Member("late")
        history = await bus.join("r", late, "late", None)
        assert [m.id for m in history.messages] == [m.id for m in sent[-3:]]
        assert history.last_id == sent[-1].id and history.complete is False
        resumed = await bus.join("r", Member("again"), "again", sent[1].key)
        assert [m.id for m in resumed.messages] == [m.id for m in sent[2:]] and resumed.complete

    run(scenario, history=3)


def test_messages_published_during_the_join_come_after_presence_once_each() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        await say(bus, "r", "ann", "before")
        bob = Member("bob")
        history = await bus.join("r", bob, "bob", None)
        assert [m.text for m in history.messages] == ["before"]
        backend.deliver([history.messages[0]])  # the history's message again (at-least-once)
        during = await say(bus, "r", "ann", "during")
        await settle()
        assert bob.frames == []  # nothing before go_live: the caller sends history and ready first
        backend.deliver([during])  # and the new one twice
        bus.go_live("r", bob)
        assert bob.kinds() == ["presence", "message"] and bob.texts() == ["during"]
        bus.go_live("r", bob)  # again: the presence list and the messages were sent already
        assert bob.kinds() == ["presence", "message"]
        after = await say(bus, "r", "ann", "after")
        await settle()
        assert bob.texts() == ["during", "after"] and bob.frames[-1]["id"] == after.id

    run(scenario)


def test_go_live_for_a_member_that_is_not_seated_does_nothing() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        stranger = Member("x")
        bus.go_live("nowhere", stranger)
        await enter(bus, "r", Member("ann"))
        bus.go_live("r", stranger)
        assert stranger.frames == []

    run(scenario)


def test_a_failed_join_leaves_no_seat_behind() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        async def broken(room: str, since: IdKey | None, limit: int) -> Any:
            raise BusUnavailable("down")

        backend.history = broken  # type: ignore[method-assign]
        with pytest.raises(BusUnavailable):
            await bus.join("r", Member("ann"), "ann", None)
        assert bus.room_count() == 0 and await backend.members("r") == []

    run(scenario)


# ---- presence and notices ---------------------------------------------------------------


def test_presence_then_join_and_leave_of_other_users_only() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        carl, ann, ann_tab = Member("carl"), Member("ann"), Member("ann")
        await enter(bus, "r", carl)
        assert carl.take() == [presence(("carl", 1))]
        await enter(bus, "r", ann)
        assert ann.take() == [presence(("ann", 1), ("carl", 1))]
        await enter(bus, "r", ann_tab)  # a second connection: no join notice
        assert ann_tab.take() == [presence(("ann", 2), ("carl", 1))]
        await settle()
        assert carl.take() == [{"type": "join", "user": "ann"}]
        assert ann.take() == []  # not told of her own coming

        await bus.leave("r", ann)
        await settle()
        assert carl.frames == [] and await backend.members("r") == [("ann", 1), ("carl", 1)]
        await bus.leave("r", ann_tab)
        await settle()
        assert carl.take() == [{"type": "leave", "user": "ann"}]
        assert await backend.members("r") == [("carl", 1)]

    run(scenario)


def test_the_last_one_out_frees_the_room_and_a_new_join_subscribes_again() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann = Member("ann")
        await enter(bus, "r", ann)
        await bus.leave("r", Member("stranger"))  # never seated in a room that exists
        assert bus.room_count() == 1
        await bus.leave("r", ann)
        await bus.leave("r", ann)  # twice: nothing more happens
        await bus.leave("never", ann)
        assert bus.room_count() == 0 and await backend.members("r") == []
        assert backend.unsubscribed == ["r"]
        await say(bus, "r", "bob", "while nobody listens")
        await settle()
        assert ann.texts() == []
        again = Member("ann")
        await enter(bus, "r", again)
        await say(bus, "r", "bob", "heard")
        await settle()
        assert again.texts() == ["heard"]

    run(scenario)


def test_typing_reaches_the_others_at_most_once_a_second() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann, bob = Member("ann"), Member("bob")
        await enter(bus, "r", ann)
        await enter(bus, "r", bob)
        await settle()
        ann.take(), bob.take()
        for _ in range(3):
            await bus.typing("r", ann)
        await bus.typing("r", bob)
        await settle()
        assert bob.take() == [{"type": "typing", "user": "ann"}]
        assert ann.take() == [{"type": "typing", "user": "bob"}]
        await bus.typing("r", Member("stranger"))  # not seated: nothing
        await bus.typing("nowhere", ann)
        await settle()
        assert ann.frames == bob.frames == []
        await bus.leave("r", ann)  # gone and back within the second: a new arrival may type at once
        again = Member("ann")
        await enter(bus, "r", again)
        await bus.typing("r", again)
        await settle()
        assert [f for f in bob.frames if f["type"] == "typing"] == [{"type": "typing", "user": "ann"}]

    run(scenario)


def test_typing_is_allowed_again_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]  # a monotonic clock may read anything, 0 included
    # The hub's clock only: the event loop keeps the real one.
    monkeypatch.setattr(room_bus, "time", SimpleNamespace(monotonic=lambda: now[0], time=time.time))

    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann, bob = Member("ann"), Member("bob")
        await enter(bus, "r", ann)
        await enter(bus, "r", bob)
        await bus.typing("r", ann)
        now[0] += TYPING_EVERY / 2
        await bus.typing("r", ann)
        now[0] += TYPING_EVERY / 2  # exactly a second after the first: allowed again
        await bus.typing("r", ann)
        await settle()
        assert [f for f in bob.frames if f["type"] == "typing"] == [{"type": "typing", "user": "ann"}] * 2
        assert backend.once_per == [TYPING_EVERY, TYPING_EVERY]  # the same limit across nodes

    run(scenario)


def test_typing_before_going_live_or_on_a_failing_backend_sends_nothing() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann, bob = Member("ann"), Member("bob")
        await enter(bus, "r", bob)
        await bus.join("r", ann, "ann", None)
        await bus.typing("r", ann)  # not live yet
        await settle()
        assert [f for f in bob.frames if f["type"] == "typing"] == []
        bus.go_live("r", ann)

        async def down(notice: Notice, once_per: float) -> bool:
            raise BusUnavailable("down")

        backend.announce = down  # type: ignore[method-assign]
        await bus.typing("r", ann)  # best-effort: no error
        await settle()
        assert [f for f in bob.frames if f["type"] == "typing"] == []

    run(scenario)


def test_notices_during_the_join_wait_in_the_seat_and_follow_presence() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann = Member("ann")
        await bus.join("r", ann, "ann", None)
        await enter(bus, "r", Member("bob"))
        await settle()
        assert ann.frames == []
        bus.go_live("r", ann)
        assert ann.frames == [presence(("ann", 1)), {"type": "join", "user": "bob"}]

    run(scenario)


def test_a_presence_notice_from_the_backend_keeps_this_nodes_own_members() -> None:
    """A backend that lost its records (Redis restarted empty) must not drop local members from the list."""

    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann, bob = Member("ann"), Member("bob")
        await enter(bus, "r", ann)
        await enter(bus, "r", bob)
        await settle()
        ann.take(), bob.take()
        backend.notify(Notice.presence("r", {"zed": 2, "bob": 0, "ann": 3}))  # ann: two more elsewhere
        expected = presence(("ann", 3), ("bob", 1), ("zed", 2))
        assert ann.take() == [expected] and bob.take() == [expected]
        backend.notify(Notice.presence("nowhere", {"zed": 1}))  # a room without members here
        backend.notify(Notice("r", "join", "zed"))
        assert ann.take() == [{"type": "join", "user": "zed"}]
        await bus.leave("r", bob)
        backend.notify(Notice.presence("r", {}))
        assert ann.take() == [presence(("ann", 1))]  # bob is gone from this node's count too

    run(scenario)


def test_the_presence_list_holds_users_of_other_nodes() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        await backend.set_connections("r", "zed", 2)  # as the backend sums them from every node
        ann = Member("ann")
        await enter(bus, "r", ann)
        assert ann.frames[0] == presence(("ann", 1), ("zed", 2))

    run(scenario)


def test_presence_failures_never_fail_a_join_or_a_leave() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        async def down(*args: Any) -> Any:
            raise BusUnavailable("presence down")

        backend.set_connections = down  # type: ignore[method-assign,assignment]
        backend.members = down  # type: ignore[method-assign,assignment]
        ann, bob = Member("ann"), Member("bob")
        await enter(bus, "r", ann)
        await enter(bus, "r", bob)
        assert ann.frames[0] == presence(("ann", 1))  # at least this node's own members
        assert bob.frames[0] == presence(("ann", 1), ("bob", 1))
        await say(bus, "r", "ann", "still flowing")
        await settle()
        assert bob.texts() == ["still flowing"]
        await bus.leave("r", bob)
        assert bus.room_count() == 1

    run(scenario)


def test_a_failed_subscription_is_tried_again_by_the_next_join() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        real_subscribe = backend.subscribe
        failures = [BusUnavailable("once")]

        async def flaky(room: str) -> None:
            if failures:
                raise failures.pop()
            await real_subscribe(room)

        backend.subscribe = flaky  # type: ignore[method-assign]
        with pytest.raises(BusUnavailable):
            await bus.join("r", Member("ann"), "ann", None)
        bob = Member("bob")
        await enter(bus, "r", bob)
        await say(bus, "r", "bob", "now subscribed")
        await settle()
        assert bob.texts() == ["now subscribed"]

    run(scenario)


def test_a_room_is_subscribed_once_for_all_its_joiners_outside_their_context() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        JOINER.set("ann's connection")
        await enter(bus, "r", Member("ann"))
        await enter(bus, "r", Member("bob"))
        await asyncio.gather(enter(bus, "s", Member("carl")), enter(bus, "s", Member("dave")))
        # The subscription outlives the joiner: it must not carry the joiner's log context.
        assert backend.subscribed == [("r", ""), ("s", "")]

    run(scenario)


def test_a_batch_skips_rooms_without_members_here_and_goes_on() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        ann = Member("ann")
        await enter(bus, "r", ann)
        backend.deliver([Message("9999999999998-0", "empty", "x", "a"), Message("9999999999999-0", "r", "x", "b")])
        assert ann.texts() == ["b"]

    run(scenario)


def test_backend_and_readiness_are_the_backends() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        assert bus.backend is backend and bus.unavailable_reason() is None
        await bus.close()
        assert bus.unavailable_reason() == "bus closed"

    run(scenario)


def test_resends_come_back_as_the_original_message() -> None:
    async def scenario(bus: RoomBus, backend: Backend) -> None:
        first = await bus.publish(Draft("r", "ann", "once", "c-1"))
        again = await bus.publish(Draft("r", "ann", "once", "c-1"))
        assert not first.duplicate and again.duplicate and again.message == first.message
        assert id_key(first.message.id) == first.message.key

    run(scenario)
