"""A reconnect storm: one of two processes behind nginx is killed, and its clients come back through the other.

Per run: bench/nginx2.py of the checkout under test (``--root``; its
redis-server, two chat processes and nginx, every one on a free port), then
N members (``--clients``) in 500 rooms, from bench/storm_client.py processes,
each member from a loopback address of its own and with a name cookie of its
own; member k of each room k < 500 sends a message every 2.5 s (200 messages/s
in all). After ``--warm`` seconds of traffic, node-1 gets SIGKILL; its members
see their connection end and reconnect through nginx with the room page's
backoff and ``since``; traffic goes on for ``--after`` seconds once every
member is ready again, then the senders stop, their unacknowledged messages
are resent until acknowledged, and every member's record is read.

Reported per run: the resume time of each member that was cut off (kill until
its next ``ready``: p50, p99, max), messages lost and doubled (every message
acknowledged to its sender must reach every member of its room that joined
before it exactly once, the replays of a resume included), the surviving
process's CPU (% of one core, kill until the last ``ready``) and RSS (before
the kill; peak, sampled every 0.1 s), Redis's CPU over the same window, and
the refused handshakes by status. From the project root:

    flock /tmp/bench.lock .venv/bin/python bench/storm.py --clients 5000,10000 \\
        --root before=/tmp/base --root after=. [--rounds 1] [--out FILE] [-- SERVER FLAGS]

The chat processes keep their default limits (join rate, per-address caps)
except ``--max-connections``, raised so that one process can hold every member.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import storm_cluster  # noqa: E402
from bench.storm_cluster import SECRET  # noqa: E402
from bench.storm_report import summary, tally  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PER_CLIENT_PROCESS = 2500
DEFAULT_SERVER_ARGS = ["--max-connections", "20000"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def nginx_pids(cluster: storm_cluster.StormCluster) -> list[int]:
    """nginx's master and its workers."""
    assert cluster.nginx is not None and cluster.nginx.process is not None
    master = cluster.nginx.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


class Clients:
    """The storm_client.py processes and their latest status lines."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.status: list[dict[str, int]] = []
        self.records: list[dict[str, Any]] = []
        self.readers: list[asyncio.Future[None]] = []

    async def start(self, port: int, clients: int, rooms: int, env: dict[str, str]) -> None:
        processes = max(1, -(-clients // PER_CLIENT_PROCESS))
        share = -(-clients // processes)
        for i in range(processes):
            first, count = i * share, min(share, clients - i * share)
            args = ["--port", str(port), "--first", str(first), "--clients", str(count), "--rooms", str(rooms)]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "bench" / "storm_client.py"),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=2**28,  # the final record line is several MB
            )
            self.procs.append(proc)
            self.status.append({})
            self.readers.append(asyncio.ensure_future(self._read(i, proc)))

    async def _read(self, i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            data = json.loads(line)
            if "records" in data:
                self.records.extend(data["records"])
            else:
                self.status[i] = data

    def total(self, key: str) -> int:
        return sum(s.get(key, 0) for s in self.status)

    def send(self, command: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command.encode() + b"\n")

    async def wait_for(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.status}")
            if any(s.get("failed") for s in self.status):
                raise RuntimeError(f"a member's task ended: {self.status}")
            await asyncio.sleep(0.1)  # polling the status lines, bounded by the deadline

    async def finish(self) -> None:
        self.send("dump")
        await asyncio.wait_for(asyncio.gather(*self.readers), 120)
        for proc in self.procs:
            await asyncio.wait_for(proc.wait(), 30)


async def profile(pid: int) -> asyncio.subprocess.Process:
    """py-spy on the survivor from the kill until every member is back (``--profile``: raw folded stacks)."""
    spy = Path(sys.executable).parent / "py-spy"
    args = ["record", "-p", str(pid), "--nonblocking", "--rate", "250", "--format", "raw", "-o", ARGS.profile]
    proc = await asyncio.create_subprocess_exec(str(spy), *args, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # py-spy attaches before the kill
    return proc


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mib(pid))
        await asyncio.sleep(0.1)  # the sampling period


async def storm(label: str, root: Path, clients: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env["CHAT_COOKIE_SECRET"] = SECRET
    cluster, run_dir = await asyncio.to_thread(storm_cluster.start, root, free_port(), ARGS.server_args)
    crowd = Clients()
    try:
        assert cluster.redis is not None and cluster.redis.process is not None
        victim, survivor = (node.service.process.pid for node in cluster.nodes)  # type: ignore[union-attr]
        redis = cluster.redis.process.pid
        started = time.monotonic()
        await crowd.start(cluster.port, clients, ARGS.rooms, env)
        await crowd.wait_for(lambda: crowd.total("ready") == clients, 600, "the first joins")
        join_s = time.monotonic() - started
        crowd.send("traffic")
        await asyncio.sleep(ARGS.warm)  # traffic before the kill
        rss_before = rss_mib(survivor)
        peak, stop_sampling = [rss_before], asyncio.Event()
        sampling = asyncio.ensure_future(sample_rss(survivor, peak, stop_sampling))
        others = {"nginx": nginx_pids(cluster), "clients": [p.pid for p in crowd.procs]}
        others0 = {name: sum(map(cpu_seconds, pids)) for name, pids in others.items()}
        cpu0, redis0, t0 = cpu_seconds(survivor), cpu_seconds(redis), time.monotonic()
        profiler = await profile(survivor) if ARGS.profile else None
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        await crowd.wait_for(lambda: crowd.total("ready") < clients, 30, "the kill to be seen")
        await crowd.wait_for(lambda: crowd.total("ready") == clients, 120, "every member to be ready again")
        window = time.monotonic() - t0
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.wait_for(profiler.wait(), 60)
        cpu, redis_cpu = cpu_seconds(survivor) - cpu0, cpu_seconds(redis) - redis0
        others_cpu = {name: sum(map(cpu_seconds, pids)) - others0[name] for name, pids in others.items()}
        await asyncio.sleep(ARGS.after)  # traffic after the storm
        stop_sampling.set()
        await sampling
        crowd.send("stop")
        await crowd.wait_for(lambda: crowd.total("outbox") == 0, 60, "every message to be acknowledged")
        await asyncio.sleep(2)  # the last acknowledged messages reach their rooms
        await crowd.finish()
    finally:
        for proc in crowd.procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.to_thread(storm_cluster.stop, cluster, run_dir)
    result = tally(crowd.records, killed_at)
    result.update(
        label=label,
        clients=clients,
        first_joins_s=round(join_s, 1),
        window_s=round(window, 2),
        survivor_cpu_pct=round(100 * cpu / window, 1),
        survivor_cpu_s=round(cpu, 2),
        survivor_rss_mib_before=round(rss_before, 1),
        survivor_rss_mib_peak=round(peak[0], 1),
        redis_cpu_pct=round(100 * redis_cpu / window, 1),
        nginx_cpu_pct=round(100 * others_cpu["nginx"] / window, 1),
        clients_cpu_pct=round(100 * others_cpu["clients"] / window, 1),
    )
    return result


async def run() -> list[dict[str, Any]]:
    results = []
    for round_no in range(ARGS.rounds):
        roots = ARGS.root if round_no % 2 == 0 else ARGS.root[::-1]  # drift hits every checkout alike
        for clients in ARGS.clients:
            for label, root in roots:
                result = await storm(label, root, clients)
                result["round"] = round_no + 1
                print(json.dumps(result), flush=True)
                if ARGS.out:
                    with Path(ARGS.out).open("a") as out:  # noqa: ASYNC230 (one line between runs)
                        out.write(json.dumps(result) + "\n")
                results.append(result)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="5000,10000", help="comma-separated member counts")
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warm", type=float, default=5.0, help="seconds of traffic before the kill")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of traffic after every member is back")
    parser.add_argument("--root", action="append", default=[], help="LABEL=DIR: a checkout to run (repeatable)")
    parser.add_argument("--out", help="append the JSON lines here")
    parser.add_argument("--summarize", help="print the tables of a file of such JSON lines, and run nothing")
    parser.add_argument("--profile", help="py-spy's folded stacks of the survivor during the storm, to this file")
    parser.add_argument("server_args", nargs="*", help="chat process flags, after --")
    args = parser.parse_args()
    args.clients = [int(n) for n in args.clients.split(",")]
    args.root = [(s.split("=", 1)[0], Path(s.split("=", 1)[1]).resolve()) for s in args.root] or [("this", ROOT)]
    args.server_args = args.server_args or DEFAULT_SERVER_ARGS
    return args


ARGS = argparse.Namespace()

if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.summarize:
        summary([json.loads(line) for line in Path(ARGS.summarize).read_text().splitlines() if line.strip()])
        sys.exit(0)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the survivor holds every member; it inherits this
    summary(asyncio.run(run()))
