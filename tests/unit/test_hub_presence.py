"""The room hub (RoomBus): presence, join and leave notices, typing (see tests/unit/hub_kit.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

import bus.room_bus as room_bus
from bus.backend import BusUnavailable
from bus.message import Notice
from bus.room_bus import TYPING_EVERY, RoomBus
from tests.unit.hub_kit import Backend, Member, enter, presence, run, say, settle

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
