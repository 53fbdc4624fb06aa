"""Round trips to an idle Redis through the bus's Wire: a PING every 10 ms, then publish.lua every 25 ms.

What one trip costs in time, apart from the server's event loop: the publish's reply and its doorbell
(heard on a second, subscribed wire), p50 and p99 in ms. From the project root, against a redis-server
of its own (its keys are written):

    redis-server --port 6393 --save '' --appendonly no &
    flock /tmp/bench.lock .venv/bin/python bench/experiments/redis_round_trip.py 6393
"""

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bus.redis.wire import Wire  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[2] / "bus" / "redis" / "scripts"


def quantiles(took: list[float]) -> str:
    took = sorted(took)
    return f"p50 {took[len(took) // 2]:.3f} p99 {took[int(len(took) * 0.99)]:.3f} ms"


async def pings(url: str) -> None:
    wire = await Wire.open(url, timeout=5.0, client_name="rtt")
    took = []
    for _ in range(500):
        started = time.perf_counter()
        await wire.execute("PING")
        took.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    wire.close()
    print(f"PING every 10 ms, 500: {quantiles(took)}")


async def publishes(url: str) -> None:
    publisher = await Wire.open(url, timeout=5.0, client_name="rtt-publish")
    subscriber = await Wire.open(url, timeout=5.0, client_name="rtt-doorbell")
    source = (SCRIPTS / "trim.lua").read_text() + "\n" + (SCRIPTS / "publish.lua").read_text()
    sha = await publisher.execute("SCRIPT", "LOAD", source)
    rung = asyncio.Event()
    subscriber.on_push = lambda push: rung.set()
    subscriber.send("SSUBSCRIBE", "{rtt}:channel")
    await asyncio.sleep(0.1)  # the subscription's confirmation is a push too
    rung.clear()
    keys = ["{rtt}:stream", "{rtt}:born", "{rtt}:trimmed", "{rtt}:channel", "{rtt}:size", "{rtt}:stream"]
    # retention, room TTL ms, user, text, history bytes, shared rate off (rate, burst)
    args = [1000, 86_400_000, "alice", "hello there " * 3, 1_048_576, 0, 0]
    replies, bells = [], []
    for _ in range(400):
        started = time.perf_counter()
        ringing = asyncio.ensure_future(rung.wait())
        await publisher.send("EVALSHA", sha, len(keys), *keys, *args)
        replies.append((time.perf_counter() - started) * 1000)
        await asyncio.wait_for(ringing, 5.0)
        bells.append((time.perf_counter() - started) * 1000)
        rung.clear()
        await asyncio.sleep(0.025)
    publisher.close()
    subscriber.close()
    print(f"publish.lua every 25 ms, 400: reply {quantiles(replies)}; doorbell heard {quantiles(bells)}")


async def main(port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    await pings(url)
    await publishes(url)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
