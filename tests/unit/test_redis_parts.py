"""The pure parts of the Redis package, without a Redis: key names, a group's state, the outage tracker, the slot map.

Everything that talks to Redis is tested against a real redis-server (and a
real cluster) in tests/test_redis_bus.py and tests/test_cluster.py; these are
the decisions those tests would only reach by chance.
"""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from bus.message import IdKey, Message, Notice
from bus.redis.client import Topology, _node_url, _parse_slots, redirected
from bus.redis.groups import RoomGroup, decode_fields, decode_flat, decode_notice, decode_rung, lost_group
from bus.redis.health import MEMORY, PRESENCE, Health, has_room, out_of_memory
from bus.redis.keys import Keys

# ---- keys ------------------------------------------------------------------------


def test_every_room_key_starts_with_the_prefix_names_the_room_and_shares_one_slot() -> None:
    keys = Keys("blue")
    room_keys = [
        keys.stream("café"),
        keys.born("café"),
        keys.trimmed("café"),
        keys.size("café"),
        keys.users("café"),
        keys.members("café", "n1/ab"),
        keys.typing("café", "ann"),
        keys.resend("café", "ann", "c1"),
        keys.channel("café"),
    ]
    assert all(key.startswith("blue:") and "café" in key for key in room_keys)
    assert len({key_slot(key.encode()) for key in room_keys}) == 1
    assert keys.stream("café") == "blue:{café}"
    assert key_slot(keys.alive.encode()) == key_slot(keys.rooms_of("n1/ab").encode())


@pytest.mark.parametrize("prefix", ["", "a b", "x{y}", "a:b", "é", "p" * 65])
def test_a_prefix_that_could_break_hash_tags_or_scans_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError) as refused:
        Keys(prefix)
    assert repr(prefix) in str(refused.value) and "1 to 64" in str(refused.value)


@pytest.mark.parametrize("prefix", ["p", "p" * 64, "a.b-c_D9"])
def test_prefixes_of_1_to_64_safe_characters_are_taken(prefix: str) -> None:
    assert Keys(prefix).stream("r") == f"{prefix}:{{r}}"


@pytest.mark.parametrize(
    "user,client_id,expected",
    [
        ("ann", "c1", "chat:{r}:cid:ann:c1"),
        ("a:b", "c", "chat:{r}:cid:a%3Ab:c"),  # else ("a", "b:c") and ("a:b", "c") would share a key
        ("a%3Ab", "c", "chat:{r}:cid:a%253Ab:c"),
    ],
)
def test_resend_keys_of_different_users_never_collide(user: str, client_id: str, expected: str) -> None:
    assert Keys().resend("r", user, client_id) == expected


@pytest.mark.parametrize(
    "channel,room",
    [
        ("chat:{lobby}:events", "lobby"),
        ("chat:{日本語}:events", "日本語"),
        ("other:{lobby}:events", None),
        ("chat:{lobby}:notices", None),
        ("chat:lobby", None),
    ],
)
def test_a_channel_names_its_room_only_under_our_prefix(channel: str, room: str | None) -> None:
    assert Keys().room_of_channel(channel) == room


@pytest.mark.parametrize(
    "payload,notice",
    [
        ("join:ann", Notice("r", "join", "ann")),
        ("leave:a:b", Notice("r", "leave", "a:b")),
        ("typing:bob", Notice("r", "typing", "bob")),
        ("msg", None),
        ("join:", None),
        ("hello:ann", None),
        ("presence:ann", None),
    ],
)
def test_only_join_leave_and_typing_payloads_are_notices(payload: str, notice: Notice | None) -> None:
    assert decode_notice("r", payload) == notice


def test_lost_groups_are_told_from_other_errors() -> None:
    assert lost_group(ResponseError("NOGROUP No such key 'chat:{r}' or consumer group 'n/1'"))
    assert not lost_group(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert lost_group(ResponseError("UNBLOCKED the stream key no longer exists"))
    assert not lost_group(ConnectionError("NOGROUP"))


@pytest.mark.parametrize(
    "reply,moved",
    [
        ("MOVED 3999 127.0.0.1:6381", True),
        ("ASK 3999 127.0.0.1:6381", True),
        ("CLUSTERDOWN down", True),
        ("TRYAGAIN", True),
        ("WRONGTYPE x", False),
        ("ERR Invalid stream ID", False),
    ],
)
def test_redirections_are_told_from_bad_requests(reply: str, moved: bool) -> None:
    assert redirected(ResponseError(reply)) is moved


# ---- a group's state ---------------------------------------------------------------------


def test_a_group_made_now_delivers_only_what_comes_after_it() -> None:
    group = RoomGroup("r", "chat:{r}")
    group.grouped("created", "5-0", "1-0")
    assert (group.cursor, group.born, group.delivered, group.caught_up) == ("5-0", "1-0", IdKey(5, 0), False)


def test_a_group_that_was_there_delivers_from_where_it_stands() -> None:
    group = RoomGroup("r", "chat:{r}")
    group.grouped("exists", "5-0", "1-0")
    assert (group.cursor, group.delivered) == ("5-0", IdKey(0, 0))


def test_a_new_epoch_starts_the_group_over_and_a_recreated_one_rereads() -> None:
    group = RoomGroup("r", "chat:{r}")
    group.grouped("created", "5-0", "1-0")
    assert group.take(Message("7-0", "r", "ann", "hi"))
    group.grouped("created", "7-0", "1-0")  # made again at the cursor: same epoch
    assert (group.cursor, group.delivered) == ("7-0", IdKey(7, 0))
    group.grouped("reset", "0-0", "9-0")  # a Redis that came back empty
    assert (group.cursor, group.born, group.delivered) == ("0-0", "9-0", IdKey(0, 0))


def test_a_group_takes_each_entry_once_and_in_order() -> None:
    group = RoomGroup("r", "chat:{r}")
    group.grouped("created", "5-0", None)
    taken = [group.take(Message(i, "r", "ann", "hi")) for i in ("4-0", "5-0", "6-0", "6-0", "5-9", "7-1")]
    assert taken == [False, False, True, False, False, True]
    assert (group.cursor, group.delivered, group.born) == ("7-1", IdKey(7, 1), "6-0")


@pytest.mark.parametrize(
    "payload,message",
    [
        ('["5-1","ann","hi \\"you\\"\\n",false]', Message("5-1", "r", "ann", 'hi "you"\n')),
        ('["5-1","ann","hi","c-1"]', Message("5-1", "r", "ann", "hi", "c-1")),
        ('["5-1","ann"]', None),
        ('["5-1",2,"hi",false]', None),
        ("[not json", None),
        ("join:ann", None),
    ],
)
def test_a_doorbell_carries_its_entry(payload: str, message: Message | None) -> None:
    assert decode_rung("r", payload) == message


def test_a_group_without_a_cursor_takes_the_first_id_it_reads() -> None:
    group = RoomGroup("r", "chat:{r}")
    assert group.take(Message("3-1", "r", "ann", "hi"))
    assert (group.cursor, group.born) == ("3-1", "3-1")


def test_the_cursor_only_moves_forward() -> None:
    group = RoomGroup("r", "chat:{r}", cursor="5-3", delivered=IdKey(5, 3))
    assert not group.take(Message("5-2", "r", "ann", "late"))
    assert group.cursor == "5-3"
    assert group.take(Message("6-0", "r", "ann", "next"))
    assert group.cursor == "6-0"


# ---- the outage tracker ----------------------------------------------------------------------


def test_one_error_and_one_recovery_per_outage_however_many_shards_fail() -> None:
    recovered: list[int] = []
    health = Health(on_recovered=lambda: recovered.append(1))
    with capture_logs() as logs:
        health.ok("a:1")
        assert health.reason is None
        health.failed("a:1", "down")
        health.failed("b:2", "down too")
        health.failed("a:1", "still down")
        assert health.reason == "still down"
        health.ok("a:1")
        assert health.reason == "down too"  # still one shard out
        health.ok("b:2")
        health.ok("b:2")
    assert [entry["event"] for entry in logs] == ["bus.connected", "bus.error", "bus.recovered"]
    assert recovered == [1] and health.recoveries == 1


def test_presence_failures_never_make_the_bus_unready() -> None:
    health = Health()
    health.ok("a:1")
    with capture_logs() as logs:
        health.failed(PRESENCE, "WRONGTYPE")
        health.failed(PRESENCE, "WRONGTYPE")
        assert health.reason is None and health.failing_parts() == []
        health.ok(PRESENCE)
    assert [entry["event"] for entry in logs] == ["presence.error", "presence.recovered"]


def test_not_ready_until_something_worked() -> None:
    health = Health()
    assert health.reason == "not connected to redis yet"
    health.ok(PRESENCE)  # presence says nothing of the bus
    assert health.reason is not None
    health.ok("a:1")
    assert health.reason is None


def test_a_shard_that_is_no_longer_a_master_is_not_waited_for() -> None:
    health = Health()
    health.ok("a:1")
    health.failed("dead:1", "gone")
    health.forget({"dead:1"})
    assert health.reason is None and health.recoveries == 1


def test_a_shard_out_of_memory_is_unready_counted_and_no_reconnect_until_it_has_room() -> None:
    refusals: list[int] = []
    health = Health(on_out_of_memory=lambda: refusals.append(1))
    health.ok("a:1")
    assert out_of_memory(ResponseError("OOM command not allowed when used memory > 'maxmemory'."))
    health.refused_for_memory("a:1", "OOM command not allowed")
    health.ok("a:1")  # a read works: the shard is up, yet takes no write
    assert health.reason == "OOM command not allowed" and health.short_of_memory() == ["a:1"]
    assert health.failing_parts() == [] and len(refusals) == 1 == health.out_of_memory_refusals
    assert not has_room({"maxmemory": 100, "used_memory": 120, "mem_not_counted_for_evict": 10})
    assert has_room({"maxmemory": 100, "used_memory": 105, "mem_not_counted_for_evict": 10})
    assert has_room({"maxmemory": 0, "used_memory": 10**9})
    health.ok(MEMORY + "a:1")
    assert health.reason is None and health.recoveries == 0  # nothing was reconnected
    health.refused_for_memory("gone:1", "OOM")
    health.forget({"gone:1"})  # failed over: no longer a master to wait for
    assert health.reason is None


# ---- the slot map --------------------------------------------------------------------------------


def test_slot_maps_in_both_of_redis_pys_shapes() -> None:
    as_list = [[0, 5460, [b"127.0.0.1", 7000, b"id"]], [5461, 16383, ["127.0.0.1", 7001, "id"]]]
    as_dict = {(0, 5460): {"primary": ("127.0.0.1", 7000)}, (5461, 16383): {"primary": ("127.0.0.1", 7001)}}
    expected = [(0, 5460, "127.0.0.1:7000"), (5461, 16383, "127.0.0.1:7001")]
    assert sorted(_parse_slots(as_list)) == sorted(_parse_slots(as_dict)) == expected


@pytest.mark.parametrize(
    "url,cluster,expected",
    [
        ("redis://127.0.0.1:6379/3", False, "redis://127.0.0.1:7000/3"),
        ("redis://:secret@10.0.0.1:6379", True, "redis://:secret@127.0.0.1:7000"),
        ("rediss://u:p@h:1/0?ssl_cert_reqs=none", True, "rediss://u:p@127.0.0.1:7000?ssl_cert_reqs=none"),
    ],
)
def test_a_nodes_url_keeps_the_credentials_and_drops_the_database_on_a_cluster(
    url: str, cluster: bool, expected: str
) -> None:
    assert _node_url(url, "127.0.0.1:7000", cluster) == expected


def test_keys_go_to_the_master_of_their_slot() -> None:
    topology = Topology("redis://127.0.0.1:7000", cluster=True, timeout=1.0, client_name="t")
    assert topology.address_for("chat:{r}") == "127.0.0.1:7000"  # no map yet: the seed (it answers MOVED)
    topology._slots = [(0, 8191, "127.0.0.1:7001"), (8192, 16383, "127.0.0.1:7002")]
    for key in ("chat:{a}", "chat:{b}", "chat:{日本語}"):
        expected = "127.0.0.1:7001" if key_slot(key.encode()) <= 8191 else "127.0.0.1:7002"
        assert topology.address_for(key) == expected
    single = Topology("redis://127.0.0.1:6390/2", cluster=False, timeout=1.0, client_name="t")
    assert single.address_for("chat:{a}") == single.address_for("chat:{b}") == "127.0.0.1:6390"


# ---- entries and channel payloads as Redis gives them -------------------------------------


def test_a_stream_entry_becomes_a_message() -> None:
    message = decode_fields("5-1", "r", {"user": "ann", "text": "hi", "cid": "c1"})
    assert message == Message("5-1", "r", "ann", "hi", "c1")
    assert decode_fields("5-2", "r", {"user": "bob", "text": "yo"}) == Message("5-2", "r", "bob", "yo", None)
    assert decode_fields("5-3", "r", {"text": "no author"}) == Message("5-3", "r", "", "no author", None)
    assert decode_fields("5-4", "r", {"user": "ann"}) == Message("5-4", "r", "ann", "", None)


def test_an_entry_deleted_while_pending_is_no_message() -> None:
    assert decode_fields("5-1", "r", {}) is None
    assert decode_flat("r", ["5-1", None]) is None
    assert decode_flat("r", ["5-1", []]) is None


def test_an_entry_as_lua_returns_it() -> None:
    assert decode_flat("r", ["7-0", ["user", "ann", "text", "hi", "cid", "c"]]) == Message("7-0", "r", "ann", "hi", "c")
    assert decode_flat("r", ["7-1", ["text", "t", "user", "u"]]) == Message("7-1", "r", "u", "t", None)
