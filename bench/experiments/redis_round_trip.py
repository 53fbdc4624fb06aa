"""Round trips to an idle Redis through the bus's Wire, on uvloop as in the server: their time, and the CPU of a wake.

- time: a PING every 10 ms; then the bus's publish.lua every 25 ms, its reply and its doorbell
  (heard on a second, subscribed wire), p50 and p99 in ms;
- CPU (time.process_time): a loop that sleeps ``gap`` and wakes, per iteration, which is what one
  wake from idle costs this host; then the same with one PING per iteration.

From the project root, against a redis-server of its own (the publishes write a room's keys):

    redis-server --port 6393 --save '' --appendonly no &
    flock /tmp/bench.lock .venv/bin/python bench/experiments/redis_round_trip.py 6393
"""

import asyncio
import sys
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis as RedisClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bus.redis.keys import Keys  # noqa: E402
from bus.redis.scripts import Scripts  # noqa: E402
from bus.redis.wire import Wire  # noqa: E402

ROOM = "round-trip"
GAPS = (0.0, 0.00125, 0.01)  # back to back; a message's spacing at 8,000 deliveries/s in rooms of 10; idle


def quantiles(took: list[float]) -> str:
    took = sorted(took)
    return f"p50 {took[len(took) // 2]:.3f} p99 {took[int(len(took) * 0.99)]:.3f} ms"


async def pings(url: str) -> None:
    wire = await Wire.open(url, timeout=5.0, client_name="round-trip")
    took = []
    for _ in range(500):
        started = time.perf_counter()
        await wire.execute("PING")
        took.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    wire.close()
    print(f"PING every 10 ms, 500: {quantiles(took)}")


async def publishes(url: str) -> None:
    """publish.lua as ``Publisher.publish`` calls it for a message without client_id, shared rate off."""
    client = RedisClient.from_url(url)
    script = Scripts(client).publish
    await client.aclose()
    publisher = await Wire.open(url, timeout=5.0, client_name="round-trip-publish")
    subscriber = await Wire.open(url, timeout=5.0, client_name="round-trip-doorbell")
    await publisher.execute("SCRIPT", "LOAD", script.script)
    k = Keys()
    rung = asyncio.Event()
    subscriber.on_push = lambda push: rung.set()
    subscriber.send("SSUBSCRIBE", k.channel(ROOM))
    await asyncio.sleep(0.1)  # the subscription's confirmation is a push too
    rung.clear()
    keys = [k.stream(ROOM), k.born(ROOM), k.trimmed(ROOM), k.channel(ROOM), k.size(ROOM), k.stream(ROOM)]
    # retention, room TTL ms, user, text, history bytes, shared rate off (rate, burst)
    args = [1000, 86_400_000, "alice", "hello there " * 3, 1_048_576, 0, 0]
    replies, bells = [], []
    for _ in range(400):
        started = time.perf_counter()
        ringing = asyncio.ensure_future(rung.wait())
        await publisher.send("EVALSHA", script.sha, len(keys), *keys, *args)
        replies.append((time.perf_counter() - started) * 1000)
        await asyncio.wait_for(ringing, 5.0)
        bells.append((time.perf_counter() - started) * 1000)
        rung.clear()
        await asyncio.sleep(0.025)
    publisher.close()
    subscriber.close()
    print(f"publish.lua every 25 ms, 400: reply {quantiles(replies)}; doorbell heard {quantiles(bells)}")


async def wake_cost(url: str, gap: float) -> None:
    wire = await Wire.open(url, timeout=5.0, client_name="round-trip-cpu")
    n = 2000 if gap else 20000
    started = time.process_time()
    for _ in range(n):
        await asyncio.sleep(gap)
    alone = (time.process_time() - started) / n
    started = time.process_time()
    for _ in range(n):
        await wire.execute("PING")
        await asyncio.sleep(gap)
    with_ping = (time.process_time() - started) / n
    wire.close()
    print(
        f"gap {gap * 1000:5.2f} ms: CPU an iteration {alone * 1e6:5.1f} µs alone, "
        f"{with_ping * 1e6:5.1f} µs with a PING ({(with_ping - alone) * 1e6:+.1f})"
    )


async def main(port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    await pings(url)
    await publishes(url)
    for gap in GAPS:
        await wake_cost(url, gap)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
