"""A bystander's latency under a join/leave churn and under a ping flood, against its quiet value, in one run.

One ``server.py`` (in-process bus, default limits, ``--behind-proxy`` so the
clients can stand for many addresses with ``X-Real-Ip``), then per round
three phases of ``--seconds`` each:

- quiet: 100 members sit in room ``busy`` (one address each, reading
  everything), four bystanders in rooms of their own send a message every
  1/12 s and time each to its ``ack``;
- churn: the same, and one address opens and closes WebSockets into ``busy``
  as fast as it can, up to ``--churn-rate`` handshakes a second (the audit's
  711 joins and leaves a second), without a cookie (a new guest name each);
- ping: the same, and four connections of one address send empty pings as
  fast as they can (reconnecting when closed).

Reports per phase the bystanders' p50/p99 ack latency, the attack's attempts
and what they met (101, 429, closes), the frames the members got, the
server's CPU, and how long the server and the bystanders waited, runnable,
for a CPU (the machine's other work); then the medians over rounds, the
ratios to quiet, and each round's ratio to its own quiet phase. From the
project root:

    flock /tmp/bench.lock .venv/bin/python bench/flood_bystander.py [--rounds 3] [--isolate | --client-cpu 1]

``--root DIR`` runs the server of another checkout (a baseline) with the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from bench.flood_load import Counts, churner, member, pinger  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
MEMBERS = 100
BYSTANDERS = 4
SEND_EVERY = 1 / 12  # seconds between a bystander's messages (the rate limit is 20/s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bystander:
    """Sends a message every SEND_EVERY and times each to its ack."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []

    async def run(self, port: int, k: int, stop: asyncio.Event) -> None:
        url = f"ws://127.0.0.1:{port}/ws/chat/quiet{k}/"
        request = HTTPRequest(url, headers={"X-Real-Ip": f"10.2.0.{k + 1}"}, request_timeout=10)
        conn = await websocket_connect(request)
        reading = asyncio.ensure_future(self._read(conn))
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            n += 1
            client_id = f"b{k}-{n}"
            self.sent[client_id] = time.perf_counter()
            conn.write_message(json.dumps({"message": f"hello {n}", "client_id": client_id}))
            next_at += SEND_EVERY
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()
        reading.cancel()

    async def _read(self, conn: Any) -> None:
        while True:
            raw = await conn.read_message()
            if raw is None:
                return
            frame = json.loads(raw)
            if frame.get("type") == "ack":
                started = self.sent.pop(frame["client_id"], None)
                if started is not None:
                    self.latencies.append(time.perf_counter() - started)
            elif frame.get("type") == "error":
                raise RuntimeError(f"bystander refused: {frame}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def waited_ms(pid: int) -> float:
    """How long the process's threads have waited, runnable, for a CPU (the kernel's schedstat): time
    the machine's other work took from it, which shows as latency though the process was not busy."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e6


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def helper(mode: str, port: int, seconds: float = 0.0) -> asyncio.subprocess.Process:
    """This script in a process of its own (``--mode``): the attack and the members do not share the
    bystanders' event loop, so their own work is not measured as the server's latency."""
    args = [__file__, "--mode", mode, "--port", str(port), "--seconds", str(seconds)]
    args += ["--churn-rate", str(ARGS.churn_rate)]
    if ARGS.client_cpu is not None or ARGS.isolate:
        args += ["--client-cpu", str(1 if ARGS.isolate else ARGS.client_cpu)]
    return await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE)


async def phase(port: int, pid: int, name: str, seconds: float, members: Counts) -> dict[str, Any]:
    stop = asyncio.Event()
    bystanders = [Bystander() for _ in range(BYSTANDERS)]
    tasks = [asyncio.ensure_future(b.run(port, k, stop)) for k, b in enumerate(bystanders)]
    attack = await helper(name, port, seconds) if name != "quiet" else None
    before_cpu, before_bytes = cpu_seconds(pid), members.get("member_bytes", 0)
    before_wait = waited_ms(pid), waited_ms(os.getpid())
    await asyncio.sleep(seconds)  # the phase's length, not a synchronisation
    cpu = cpu_seconds(pid) - before_cpu
    server_wait, bystander_wait = waited_ms(pid) - before_wait[0], waited_ms(os.getpid()) - before_wait[1]
    member_bytes = members.get("member_bytes", 0) - before_bytes
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    counts: dict[str, int] = {}
    if attack is not None:
        out, _ = await asyncio.wait_for(attack.communicate(), 60)
        counts = json.loads(out.decode().strip().splitlines()[-1])
    latencies = [x for b in bystanders for x in b.latencies]
    return {
        "phase": name,
        "samples": len(latencies),
        "p50_ms": round(p(latencies, 0.5), 2),
        "p99_ms": round(p(latencies, 0.99), 2),
        "server_cpu_pct": round(100 * cpu / seconds, 1),
        "member_kib_s": round(member_bytes / 1024 / seconds / MEMBERS, 1),
        "server_waited_ms": round(server_wait, 1),
        "bystanders_waited_ms": round(bystander_wait, 1),
        "attack": counts,
    }


async def watch_members(process: asyncio.subprocess.Process, members: Counts) -> None:
    """The members' process prints its running byte count; keep the latest."""
    assert process.stdout is not None
    async for line in process.stdout:
        members["member_bytes"] = json.loads(line)["member_bytes"]


async def run(port: int, pid: int) -> list[dict[str, Any]]:
    members = Counts()
    sitting = await helper("members", port)
    watching = asyncio.ensure_future(watch_members(sitting, members))
    await asyncio.sleep(3)  # let them settle in
    results = []
    try:
        for round_no in range(ARGS.rounds):
            for name in ("quiet", "churn", "ping"):
                result = await phase(port, pid, name, ARGS.seconds, members)
                result["round"] = round_no + 1
                print(json.dumps(result), flush=True)
                results.append(result)
                await asyncio.sleep(1.5)  # the attack's connections close and its budgets refill
                if sitting.returncode is not None:
                    raise RuntimeError("the members' process ended: a member was disconnected")
    finally:
        if sitting.returncode is None:
            sitting.terminate()
        await sitting.wait()
        watching.cancel()
    return results


async def helper_main() -> None:
    """``--mode members|churn|ping``: run one side of the load and report it as JSON on stdout."""
    counts = Counts()
    stop = asyncio.Event()
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # the load: not the bystanders' priority
    if ARGS.client_cpu is not None:  # the load's side of the machine (see --client-cpu)
        os.sched_setaffinity(0, {ARGS.client_cpu})
    if ARGS.mode == "members":
        tasks = [asyncio.ensure_future(member(ARGS.port, k, counts, stop)) for k in range(MEMBERS)]
        while True:
            await asyncio.sleep(0.25)  # reporting period
            print(json.dumps({"member_bytes": counts.get("member_bytes", 0)}), flush=True)
            broken = [task for task in tasks if task.done()]
            if broken:
                raise SystemExit(f"member ended: {broken[0].exception()}")
    if ARGS.mode == "churn":
        tasks = [asyncio.ensure_future(churner(ARGS.port, ARGS.churn_rate, counts, stop))]
    else:
        tasks = [asyncio.ensure_future(pinger(ARGS.port, counts, stop)) for _ in range(4)]
    await asyncio.sleep(ARGS.seconds)  # the phase's length
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    print(json.dumps(counts), flush=True)


def summary(results: list[dict[str, Any]]) -> None:
    """Medians over rounds; ``round ratios``: each round's p99 over that round's quiet p99 (the machine's
    load from other work changes between rounds more than within one)."""
    quiet_of = {r["round"]: r["p99_ms"] for r in results if r["phase"] == "quiet"}
    quiet = statistics.median(quiet_of.values())
    print("\nphase   median p50 ms  median p99 ms  p99 / quiet  server CPU %  server waited ms  round ratios")
    for name in ("quiet", "churn", "ping"):
        rows = [r for r in results if r["phase"] == name]
        p99 = statistics.median(r["p99_ms"] for r in rows)
        ratios = " ".join(f"{r['p99_ms'] / quiet_of[r['round']]:.2f}" for r in rows)
        print(
            f"{name:6}  {statistics.median(r['p50_ms'] for r in rows):13.2f}  {p99:13.2f}"
            f"  {p99 / quiet:11.2f}  {statistics.median(r['server_cpu_pct'] for r in rows):12.1f}"
            f"  {statistics.median(r['server_waited_ms'] for r in rows):16.1f}  {ratios}"
        )


def place_server() -> None:
    """In the server's process before it starts: its CPU and priority (see --isolate)."""
    if ARGS.isolate:
        os.sched_setaffinity(0, {0})
        os.nice(-10)


def main() -> int:
    if ARGS.mode:
        asyncio.run(helper_main())
        return 0
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="flood-bystander-", suffix=".log", delete=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env["CHAT_COOKIE_SECRET"] = "flood-bystander-bench-secret-0123456789abcdef"
    command = [
        sys.executable,
        str(Path(ARGS.root) / "server.py"),
        "--port",
        str(port),
        "--behind-proxy",
        "--log-format",
        "json",
    ]
    server = subprocess.Popen(
        command + ARGS.server_args, cwd=ARGS.root, env=env, stdout=log, stderr=log, preexec_fn=place_server
    )
    if ARGS.isolate:  # this process, the bystanders that measure (see --isolate)
        os.sched_setaffinity(0, {1})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"server did not start; see {log.name}") from None
                time.sleep(0.1)  # polling for the listener, bounded by the deadline
        summary(asyncio.run(run(port, server.pid)))
    finally:
        server.terminate()
        server.wait(10)
        os.unlink(log.name)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--churn-rate", type=float, default=700.0, help="handshakes a second the churner attempts")
    parser.add_argument(
        "--client-cpu",
        type=int,
        help="run the attack and the members on this CPU only: on a small machine an attacker flooding the"
        " loopback would otherwise take the server's CPU, which one elsewhere could not",
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="(as root, 2 CPUs or more) the server alone on CPU 0 at nice -10; the attack and the members on CPU 1;"
        " the bystanders on CPU 1 under SCHED_FIFO (they use little CPU): neither the load generator nor the"
        " rest of a shared machine then shows as the server's latency",
    )
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose server.py runs (a baseline)")
    parser.add_argument("server_args", nargs="*", help="more server flags, after --")
    parser.add_argument("--mode", choices=["members", "churn", "ping"], help=argparse.SUPPRESS)  # a helper process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = argparse.Namespace()

if __name__ == "__main__":
    ARGS = parse_args()
    sys.exit(main())
