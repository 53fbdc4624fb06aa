"""bus/redis/wire.py against a real redis-server: pipelining, errors, timeouts, lost connections, AUTH, sockets."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus.redis.wire import Wire, encode
from tests.helpers import eventually, free_port
from tests.services import RedisServer

PASSWORD = "wire-test-secret-0123456789"


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert (
        encode(("SET", "k", b"\x00v", 7, 1.5))
        == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )
    assert encode(("GET", "café")) == b"*2\r\n$3\r\nGET\r\n$5\r\ncaf\xc3\xa9\r\n"


@pytest.mark.gen_test(timeout=30)
async def test_many_commands_in_flight_each_get_their_own_reply_in_order(redis_db: str) -> None:
    wire = await Wire.open(redis_db, timeout=5, client_name="wire-test")
    try:
        sent = [wire.send("INCR", "counter") for _ in range(500)]  # one loop turn: one write
        sent.append(wire.send("HSET", "h", "a", "1", "b", "2"))
        sent.append(wire.send("HGETALL", "h"))
        replies = await asyncio.gather(*sent)
        assert replies[:500] == list(range(1, 501))
        assert replies[500] == 2 and replies[501] == ["a", "1", "b", "2"]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wire.execute("LPUSH", "h", "x")  # an error reply fails its command alone
        assert await wire.execute("GET", "counter") == "500"
        assert await wire.execute("CLIENT", "GETNAME") == "wire-test"
    finally:
        wire.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_command_past_the_timeout_closes_the_wire_and_fails_everything_in_flight(
    own_redis: RedisServer,
) -> None:
    own_redis.start()
    wire = await Wire.open(own_redis.url(), timeout=0.3, client_name="wire-test")
    pauser = await Wire.open(own_redis.url(), timeout=5, client_name="pauser")
    try:
        await pauser.execute("CLIENT", "PAUSE", "2000", "ALL")
        first, second = wire.send("PING"), wire.send("PING")
        with pytest.raises(RedisTimeoutError):
            await first
        with pytest.raises(RedisTimeoutError):
            await second
        assert wire.closed
        with pytest.raises(RedisTimeoutError):
            await wire.execute("PING")  # a closed wire fails at once, with why it closed
    finally:
        wire.close()
        pauser.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_lost_connection_fails_what_was_in_flight_and_tells_a_subscriber(own_redis: RedisServer) -> None:
    own_redis.start()
    subscriber = await Wire.open(own_redis.url(), timeout=5, client_name="sub")
    heard: list[Any] = []
    gone = asyncio.get_running_loop().create_future()

    def on_push(push: Any) -> None:
        heard.append(push)
        if isinstance(push, BaseException):
            gone.set_result(push)

    subscriber.on_push = on_push
    subscriber.send("SUBSCRIBE", "news")
    commander = await Wire.open(own_redis.url(), timeout=5, client_name="cmd")
    await eventually(_holds(lambda: ["subscribe", "news", 1] in heard), 5, "subscribed")
    assert await commander.execute("PUBLISH", "news", "hello") == 1
    await eventually(_holds(lambda: ["message", "news", "hello"] in heard), 5, "the message pushed")
    await asyncio.to_thread(own_redis.kill)
    assert isinstance(await asyncio.wait_for(gone, 5), RedisConnectionError)
    with pytest.raises(RedisConnectionError):
        await commander.execute("PING")
    assert commander.closed and subscriber.closed


@pytest.mark.gen_test(timeout=30)
async def test_a_wire_authenticates_with_the_urls_password_and_a_wrong_one_is_refused(own_redis: RedisServer) -> None:
    own_redis.start()
    admin = await Wire.open(own_redis.url(), timeout=5, client_name="admin")
    await admin.execute("CONFIG", "SET", "requirepass", PASSWORD)  # from now on, every new connection
    admin.close()
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/3"
    wire = await Wire.open(url, timeout=5, client_name="auth-test")
    try:
        await wire.execute("SET", "k", "v")
        assert await wire.execute("CLIENT", "INFO")  # authenticated
        assert (await wire.execute("CLIENT", "INFO")).split(" db=")[1].startswith("3 ")  # SELECTed
    finally:
        wire.close()
    with pytest.raises(ResponseError, match="WRONGPASS|invalid"):
        await Wire.open(f"redis://:wrong@127.0.0.1:{own_redis.port}/0", timeout=5, client_name="x")


@pytest.mark.gen_test(timeout=30)
async def test_a_wire_reaches_redis_over_a_unix_socket_and_says_clearly_when_nothing_listens(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "redis.sock"
    own_redis.start(args=["--unixsocket", str(path), "--unixsocketperm", "700"])
    wire = await Wire.open(f"unix://{path}?db=2", timeout=5, client_name="unix-test")
    try:
        script = "return 'ran'"
        sha = hashlib.sha1(script.encode()).hexdigest()
        with pytest.raises(ResponseError, match="NOSCRIPT"):
            await wire.execute("EVALSHA", sha, 0)
        assert await wire.execute("SCRIPT", "LOAD", script) == sha
        assert await wire.execute("EVALSHA", sha, 0) == "ran"
    finally:
        wire.close()
    with pytest.raises(RedisConnectionError):
        await Wire.open(f"redis://127.0.0.1:{free_port()}/0", timeout=5, client_name="nobody")


def _holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check
