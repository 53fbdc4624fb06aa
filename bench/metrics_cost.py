"""The cost of the operator metrics per delivery: the same run, without and with them, alternated rounds.

What the metrics added on a message's way is one dict increment per message
fanned out (messages per room, for the busiest rooms); joins and closes got a
histogram and a counter each (per connection, not per delivery); lag and the
busiest rooms are sampled off the message path every ``--metrics-interval``.
Three measures, each printed as medians over alternated rounds:

1. micro: ``Metrics.delivered`` as it is, beside the same method without the
   per-room count (the code before), ns per call; and per connection, a close
   with and without its count by code, and a join's two histograms;
2. fan-out: a server in this process on the in-process bus, ``--clients``
   real WebSocket clients in one room (Tornado's, in a child process of
   this script, reading and dropping), messages handed to the fan-out in paced bursts; this
   thread's CPU per delivery with the fan-out observer as it is (A) and with
   the observer's ``delivered`` put back to the code before (B), bursts
   alternated A B B A ... within each round;
3. sampler: a server on a Redis of its own (redis-server on a free port, a
   temporary directory) holding ``--rooms`` rooms, CPU of one sample (lag
   script over every room, top rooms), as a share of one core at the default
   5 s interval.

From the project root (the machine is shared: take the lock):

    flock /tmp/bench.lock .venv/bin/python bench/metrics_cost.py [--clients 10] [--messages 20000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis as redis_py  # noqa: E402

from bus.message import Message  # noqa: E402
from config.cli import load_settings  # noqa: E402
from runtime.chat_server import ChatServer  # noqa: E402
from telemetry.metrics import Metrics  # noqa: E402

BURST = 200  # messages per burst: the receivers keep up, the sockets' buffers never fill


def delivered_before(metrics: Metrics) -> Callable[[str, int, float], None]:
    """``Metrics.delivered`` as it was before the per-room count."""
    hot = metrics.hot

    def delivered(room: str, recipients: int, age_seconds: float) -> None:
        hot.delivered += recipients
        hot.fanout_seconds.observe(max(0.0, age_seconds))

    return delivered


def micro(rounds: int, calls: int = 200_000) -> tuple[float, float]:
    """Median ns per call of ``delivered`` before and now, alternated rounds."""
    metrics = Metrics()
    before, now = delivered_before(metrics), metrics.delivered
    times: dict[str, list[float]] = {"before": [], "now": []}
    for round_ in range(rounds):
        order = [("before", before), ("now", now)]
        for name, fn in order if round_ % 2 == 0 else order[::-1]:
            seconds = min(timeit.repeat(lambda fn=fn: fn("room7", 10, 0.001), number=calls, repeat=3))
            times[name].append(seconds / calls * 1e9)
            metrics.hot.take_room_messages()
    return statistics.median(times["before"]), statistics.median(times["now"])


def per_connection(calls: int = 200_000) -> tuple[float, float, float]:
    """ns per close before (the gauge alone) and now (plus the count by code), and per join's two histograms."""
    metrics = Metrics()

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e9

    before = best(metrics.connections.dec)
    now = best(lambda: metrics.connection_closed(1000))
    joins = best(lambda: (metrics.join_took(0.002), metrics.replay_took(0.0003)))
    return before, now, joins


async def held(server: ChatServer, room: str, clients: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        state = server.bus._rooms.get(room)
        if state is not None and len(state.seats) >= clients and all(s.live for s in state.seats.values()):
            return
        await asyncio.sleep(0.05)  # polling the joins, bounded by the deadline
    raise TimeoutError(f"{clients} clients did not join {room}")


def burst(seq: list[int]) -> list[Message]:
    batch = []
    for _ in range(BURST):
        seq[0] += 1
        batch.append(Message(f"{1_700_000_000_000 + seq[0]}-0", "bench0", "bench", "x" * 100))
    return batch


async def fan_out_cpu(
    server: ChatServer, messages: int, seq: list[int], before: Callable[..., None]
) -> dict[str, float]:
    """This thread's CPU seconds to fan ``messages`` out with each observer, burst by burst in turn (A B B A ...).

    Alternating bursts, not whole runs, puts both variants under the same
    load from the rest of the machine (it is shared): the drift between runs
    was larger than the difference measured.
    """
    metrics: Any = server.metrics
    spent = {"A": 0.0, "B": 0.0}
    for k in range(messages // BURST):
        for name in ("A", "B") if k % 2 == 0 else ("B", "A"):
            if name == "B":
                metrics.delivered = before  # the instance attribute shadows the method
            batch = burst(seq)
            started = time.thread_time()
            for message in batch:
                server.bus._fan_out([message])
            spent[name] += time.thread_time() - started
            metrics.__dict__.pop("delivered", None)
            await asyncio.sleep(0.02)  # the clients read what was sent: the next burst finds empty buffers
    return spent


async def fan_out(clients: int, messages: int, rounds: int) -> tuple[list[float], list[float]]:
    """µs per delivery of the fan-out, with the observer as it is (A) and as before (B)."""
    flags = ["--port", "0", "--rate-limit", "0", "--client-rate-limit", "0", "--metrics-interval", "3600"]
    settings = load_settings(flags)
    server = ChatServer(settings)
    await server.start()
    url = f"ws://127.0.0.1:{server.port}/ws/chat/bench0/"
    readers = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--hold", url, "--clients", str(clients), cwd=ROOT, stdout=subprocess.DEVNULL
    )
    results: dict[str, list[float]] = {"A": [], "B": []}
    before = delivered_before(server.metrics)
    try:
        await held(server, "bench0", clients, time.monotonic() + 30)
        seq = [0]
        await fan_out_cpu(server, messages // 4, seq, before)  # warm-up
        for round_ in range(rounds):
            spent = await fan_out_cpu(server, messages, seq, before)
            server.metrics.hot.take_room_messages()
            for name in ("A", "B"):
                results[name].append(spent[name] / (messages * clients) * 1e6)
            print(f"round {round_ + 1}: A {results['A'][-1]:.3f}  B {results['B'][-1]:.3f} µs/delivery", flush=True)
    finally:
        if readers.returncode is None:
            readers.terminate()
        await asyncio.wait_for(readers.wait(), 5)
        await server.stop()
    return results["A"], results["B"]


async def hold(url: str, clients: int) -> None:
    """The readers' process: ``clients`` WebSockets that read and drop everything, until killed."""
    from tornado.websocket import websocket_connect

    connections = [await websocket_connect(url, connect_timeout=10) for _ in range(clients)]

    async def drain(connection: Any) -> None:
        while await connection.read_message() is not None:
            pass

    await asyncio.gather(*(drain(c) for c in connections))


class Seat:
    def send_frame(self, frame: bytes) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sampler(rooms: int, samples: int) -> tuple[list[float], float]:
    """CPU ms of one sample with ``rooms`` rooms held on a Redis of its own; Redis's µs per lag.lua call."""
    directory = tempfile.mkdtemp(prefix="metrics-cost-redis-")
    port = free_port()
    redis = await asyncio.create_subprocess_exec(
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        args = ["--port", "0", "--redis-url", f"redis://127.0.0.1:{port}/0", "--metrics-interval", "3600"]
        server = ChatServer(load_settings(args))
        await server.start()
        try:
            for n in range(rooms):
                await server.bus.join(f"room{n}", Seat(), f"user{n}", None)
                server.bus.go_live(f"room{n}", Seat())
            await server.sampler.sample()
            client = redis_py.Redis(port=port, socket_timeout=5)
            client.config_resetstat()  # from here on, the only scripts run are the samples' lag.lua
            spent = []
            for _ in range(samples):
                started = time.thread_time()
                await server.sampler.sample()
                spent.append((time.thread_time() - started) * 1000)
            stats = client.info("commandstats").get("cmdstat_evalsha", {})
            client.close()
            return spent, float(stats.get("usec_per_call", 0.0))
        finally:
            await server.stop()
    finally:
        redis.terminate()
        await asyncio.wait_for(redis.wait(), 10)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--hold", metavar="URL", help=argparse.SUPPRESS)  # the readers' child process
    args = parser.parse_args()
    if args.hold:
        asyncio.run(hold(args.hold, args.clients))
        return

    before, now = micro(args.rounds)
    print(f"micro: delivered() before {before:.1f} ns, now {now:.1f} ns: +{now - before:.1f} ns per message")

    close_before, close_now, joins = per_connection()
    print(
        f"per connection: close before {close_before:.0f} ns, now {close_now:.0f} ns "
        f"(+{close_now - close_before:.0f}); join and replay histograms {joins:.0f} ns"
    )

    a, b = asyncio.run(fan_out(args.clients, args.messages, args.rounds))
    ma, mb = statistics.median(a), statistics.median(b)
    ratios = [x / y for x, y in zip(a, b)]  # A and B of one round ran under the same load: compare them pairwise
    print(
        f"fan-out, {args.clients} clients: with {ma:.3f} µs/delivery, before {mb:.3f}; median of the rounds' "
        f"ratios {statistics.median(ratios):.3f}x (ratio of the medians {ma / mb:.3f}x; rounds "
        f"{' '.join(f'{r:.3f}' for r in ratios)})"
    )

    spent, redis_us = asyncio.run(sampler(args.rooms, 10))
    per = statistics.median(spent)
    share = per / 5000 * 100
    print(f"sampler, {args.rooms} rooms on Redis: {per:.1f} ms CPU per sample = {share:.2f} % of a core at 5 s")
    redis_share = redis_us * args.rooms / 5e6 * 100
    print(f"  Redis: {redis_us:.1f} µs per room's lag.lua = {redis_share:.2f} % of Redis's core at 5 s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
