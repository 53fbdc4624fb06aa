"""CPU per delivery on the in-process bus, with and without ``--data-file``, in one run.

The shape of the issue-9 benchmark's ``rooms`` scenario at its 8,000
deliveries a second (20 rooms x 10 clients, the first client of each room
sending 40 messages a second on a fixed schedule, 100-byte texts), with
Python clients instead of loadgen.mjs. Each round starts ``server.py``
(in-process bus) as a process of its own, once plain and once with
``--data-file`` on a fresh file (the order alternates between rounds, so
drift in the machine's load hits both alike). The server's CPU time (user +
system, from /proc) over the sending is divided by the deliveries received.
From the project root:

    flock /tmp/bench.lock .venv/bin/python bench/data_file_cpu.py [--rounds 5] [--commit-window MS]

Prints one line per run, then the medians and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tornado.websocket import WebSocketClientConnection, websocket_connect  # noqa: E402

from tests.client import TEST_SECRET  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def one_run(data_file: bool, args: argparse.Namespace, work: Path) -> float:
    flags = ["--rate-limit", "0", "--client-rate-limit", "0", "--max-connections-per-client", "100000"]
    flags += ["--log-format", "json"]
    if data_file:
        flags += ["--data-file", str(work / "chat.sqlite3")]
        if args.commit_window is not None:
            flags += ["--commit-window", str(args.commit_window)]
    server = ServerProcess(flags, work / "server.log", env={"CHAT_COOKIE_SECRET": TEST_SECRET})
    await server.start()
    try:
        assert server.process is not None
        received = 0
        sent: list[int] = []

        def count(frame: str | bytes | None) -> None:  # no JSON parsing: the client must keep up
            nonlocal received
            if frame is not None and frame[:17] in ('{"type":"message"', b'{"type":"message"'):
                received += 1

        url = f"ws://127.0.0.1:{server.port}/ws/chat/room{{}}/"
        rooms = [
            [await websocket_connect(url.format(r), on_message_callback=count) for _ in range(args.clients)]
            for r in range(args.rooms)
        ]

        async def send(client: WebSocketClientConnection, phase: float, until: float) -> None:
            period = 1 / args.rate
            next_at = time.monotonic() + phase * period
            n = 0
            while next_at < until:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # a fixed schedule, as loadgen's
                client.write_message(json.dumps({"message": f"{n}:" + "." * 96}))
                n += 1
                sent.append(n)
                next_at += period

        sent_until = time.monotonic() + args.duration
        before = cpu_seconds(server.process.pid)
        await asyncio.gather(*(send(members[0], r / args.rooms, sent_until) for r, members in enumerate(rooms)))
        expected = len(sent) * args.clients
        drained = time.monotonic() + 15.0  # a loaded machine: late is not lost
        while received < expected and time.monotonic() < drained:
            await asyncio.sleep(0.05)  # the last deliveries, bounded by the deadline
        used = cpu_seconds(server.process.pid) - before
        if received < expected:
            raise RuntimeError(f"only {received} of {expected} deliveries")
        for members in rooms:
            for client in members:
                client.close()
    finally:
        await server.stop()
    return used / received * 1e6  # µs per delivery


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10, help="per room, the sender among them")
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second per sender")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--commit-window", type=float, help="ms, for the --data-file server")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"memory": [], "memory+data-file": []}
    for round_no in range(args.rounds):
        order = [False, True] if round_no % 2 == 0 else [True, False]
        for data_file in order:
            with tempfile.TemporaryDirectory() as work:
                us = await one_run(data_file, args, Path(work))
            name = "memory+data-file" if data_file else "memory"
            results[name].append(us)
            print(json.dumps({"round": round_no, "server": name, "us_per_delivery": round(us, 3)}), flush=True)
    plain, stored = (statistics.median(results[k]) for k in ("memory", "memory+data-file"))
    print(f"median µs per delivery: memory {plain:.3f}, memory+data-file {stored:.3f}, ratio {stored / plain:.3f}")


if __name__ == "__main__":
    uvloop.run(main())
