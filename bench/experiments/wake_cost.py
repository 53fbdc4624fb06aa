"""What a process's wake-up costs in CPU on this host: uvloop timer wakes and Redis round trips.

A loop that sleeps ``gap`` and wakes, n times: its CPU (time.process_time) per iteration is the
cost of one wake from idle. Then the same with one PING to Redis per iteration (through the bus's
Wire): the difference is what a round trip adds, its own wake included. From the project root:

    redis-server --port 6393 --save '' --appendonly no &
    flock /tmp/bench.lock .venv/bin/python bench/experiments/wake_cost.py 6393
"""

import asyncio
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bus.redis.wire import Wire  # noqa: E402

GAPS = (0.0, 0.00125, 0.01)  # back to back; a message's spacing at 8,000 deliveries/s in rooms of 10; idle


async def measure(port: int, gap: float) -> None:
    wire = await Wire.open(f"redis://127.0.0.1:{port}/0", timeout=5.0, client_name="wake-cost")
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


def main() -> None:
    port = int(sys.argv[1])
    for gap in GAPS:
        uvloop.run(measure(port, gap))


if __name__ == "__main__":
    main()
