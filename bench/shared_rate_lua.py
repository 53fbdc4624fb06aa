"""Redis's own time in publish.lua with the shared rate budget off and on, the same scenario in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/shared_rate_lua.py [--messages 20000] [--rounds 5]

One redis-server of its own (a free port, nothing persisted). Per round, each
mode in turn: a ``RedisBroker`` (the server's Redis bus) with the rate off
(``--rate-limit 0``) or on but never reached (1000/s, burst 2000) publishes
``--messages`` messages from 100 users over 20 rooms, 50 at a time.
``CONFIG RESETSTAT`` before each; after it, ``INFO commandstats``:
``usec_per_call`` of ``evalsha`` is the script's time inside Redis per
message. The publisher's wall time per message is printed beside it (the
client side, loop and wire included). JSON lines, then medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.message import Draft  # noqa: E402
from bus.redis import RedisBroker, RedisOptions  # noqa: E402

MODES = {"off": (0.0, 1), "on": (1000.0, 2000)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port, socket_timeout=1) as client:
                client.ping()
                return process, port
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


async def publish_all(url: str, mode: str, messages: int, round_no: int) -> float:
    rate, burst = MODES[mode]
    broker = RedisBroker(RedisOptions(url=url, node_id=f"bench-{mode}", rate_limit=rate, rate_burst=burst))
    await broker.start(lambda delivered: None)
    try:
        started = time.perf_counter()
        for first in range(0, messages, 50):
            drafts = [
                Draft(f"room{k % 20}", f"user{k % 100}", f"r{round_no} {mode} {k}", f"c{round_no}-{mode}-{k}")
                for k in range(first, min(first + 50, messages))
            ]
            await asyncio.gather(*(broker.publish(draft) for draft in drafts))
        return (time.perf_counter() - started) / messages * 1e6
    finally:
        await broker.close()


def evalsha_usec(port: int) -> float:
    with redis.Redis(port=port, socket_timeout=5) as client:
        stats = client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the bus's info lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {mode: {"redis_us": [], "wall_us": []} for mode in MODES}
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_redis(directory)
        try:
            for round_no in range(options.rounds):
                for mode in MODES:
                    with redis.Redis(port=port, socket_timeout=5) as client:
                        client.flushall()
                        client.config_resetstat()
                    wall = asyncio.run(publish_all(f"redis://127.0.0.1:{port}/0", mode, options.messages, round_no))
                    inside = evalsha_usec(port)
                    results[mode]["redis_us"].append(inside)
                    results[mode]["wall_us"].append(wall)
                    line = {"round": round_no, "mode": mode, "redis_us_per_publish": inside, "wall_us": wall}
                    print(json.dumps(line))
        finally:
            process.terminate()
            process.wait(10)
    medians = {mode: {k: statistics.median(v) for k, v in figures.items()} for mode, figures in results.items()}
    print("| rate | publish.lua in Redis, µs per message (median) | publisher wall µs per message (median) |")
    print("| --- | --- | --- |")
    for mode, figures in medians.items():
        print(f"| {mode} | {figures['redis_us']:.2f} | {figures['wall_us']:.1f} |")
    ratio = medians["on"]["redis_us"] / medians["off"]["redis_us"]
    print(f"on / off, in Redis: {ratio:.2f}x")


if __name__ == "__main__":
    main()
