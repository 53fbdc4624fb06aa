"""The room hub (RoomBus): messages, joins, subscriptions (see tests/unit/hub_kit.py for the setup)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus.backend import BusUnavailable
from bus.message import Draft, IdKey, Message, id_key
from bus.room_bus import RoomBus
from tests.unit.hub_kit import JOINER, Backend, Member, Observer, enter, run, say, settle

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
