"""What a Redis Cluster costs a user: the latency of --redis-wait-replicas, and how long a failover pauses delivery.

    .venv/bin/python bench/cluster_failover.py [--rounds 3] [--out bench/results/cluster-failover.jsonl]

For each configuration it starts a local cluster (ops/redis_cluster.py: 3
masters with 1 or 2 replicas each, cluster-node-timeout 2000 ms) and one
server.py on it, then:

- latency: 300 messages sent one at a time with a client_id, each waiting for
  its ack; median and p99 of send -> ack;
- failover: a sender sends a message with a client_id every 20 ms and resends
  an unacknowledged one (as the room page does); the master of its room is
  killed with SIGKILL after 50 acks and started again 5 s later; the pause is
  the longest gap between two acks, and every acknowledged message must be in
  the room's history once.

Loopback only; every process it starts is stopped. One JSON line per
configuration and round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.redis_cluster import LocalRedisCluster  # noqa: E402
from tests.client import ChatClient  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

SECRET = "x" * 40
CONFIGS = [  # (replicas per master, --redis-wait-replicas)
    (1, 0),
    (1, 1),
    (2, 1),
]


async def ack_of(client: ChatClient, client_id: str) -> dict:
    while True:
        frame = await client.recv(timeout=15)
        if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
            return frame


async def latency(client: ChatClient, count: int = 300) -> dict:
    times = []
    for k in range(count):
        started = time.perf_counter()
        await client.say(f"l{k}", client_id=f"l{k}")
        frame = await ack_of(client, f"l{k}")
        assert frame["type"] == "ack", frame
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"ack_ms_p50": round(statistics.median(times), 3), "ack_ms_p99": round(times[int(len(times) * 0.99) - 1], 3)}


async def failover(cluster: LocalRedisCluster, client: ChatClient, room_key: str, count: int = 200) -> dict:
    master = cluster.master_of(room_key)
    acks: list[tuple[str, float]] = []
    killed_at = 0.0
    restart: asyncio.Task | None = None
    for k in range(count):
        if k == 50:
            await asyncio.to_thread(cluster.node(master).kill)
            killed_at = time.monotonic()

            async def start_again() -> None:
                await asyncio.sleep(5)  # the scenario: the dead node returns 5 s later
                await asyncio.to_thread(cluster.restart_node, master)

            restart = asyncio.ensure_future(start_again())
        while True:
            await client.say(f"f{k}", client_id=f"f{k}")
            frame = await ack_of(client, f"f{k}")
            if frame["type"] == "ack":
                acks.append((frame["id"], time.monotonic()))
                break
            await asyncio.sleep(0.1)  # the page's resend backoff
        await asyncio.sleep(0.02)  # the sender's pace: one message every 20 ms
    if restart is not None:
        await restart
    gaps = [b[1] - a[1] for a, b in zip(acks, acks[1:])]
    first_after = next(t for _, t in acks if t > killed_at)
    return {
        "pause_s": round(max(gaps), 2),
        "first_ack_after_kill_s": round(first_after - killed_at, 2),
        "acked": len(acks),
        "ids": [i for i, _ in acks],
    }


async def one_round(replicas: int, wait: int, workdir: Path) -> dict:
    cluster = LocalRedisCluster(workdir / "cluster", replicas=replicas)
    await asyncio.to_thread(cluster.start)
    server = ServerProcess(
        [
            "--redis-url",
            cluster.url,
            "--redis-cluster",
            "--redis-prefix",
            "bench",
            "--redis-wait-replicas",
            str(wait),
            "--node-id",
            "bench-1",
            "--rate-limit",
            "0",
            "--client-rate-limit",
            "0",
            "--log-format",
            "json",
        ],
        workdir / "server.log",
        env={"CHAT_COOKIE_SECRET": SECRET},
    )
    try:
        await server.start()
        client = await ChatClient.connect(server.port, "failover", user="ann", secret=SECRET)
        print(f"[cluster_failover] {replicas} replicas per master, wait {wait}", file=sys.stderr, flush=True)
        result = {"replicas_per_master": replicas, "wait_replicas": wait, **await latency(client)}
        outcome = await failover(cluster, client, "bench:{failover}")
        reader = await ChatClient.connect(server.port, "failover", since="0-0", secret=SECRET)
        stored = [f["id"] for f in reader.history if f["message"].startswith("f")]
        result.update({k: v for k, v in outcome.items() if k != "ids"})
        result["lost_acked"] = len(set(outcome["ids"]) - set(stored))
        result["stored_twice"] = len(stored) - len(set(stored))
        return result
    except BaseException:
        print((workdir / "server.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.kill()
        cluster.stop()


async def run(rounds: int, commit: str, out: str | None) -> list[str]:
    lines = []
    for round_no in range(1, rounds + 1):
        for replicas, wait in CONFIGS:
            with tempfile.TemporaryDirectory() as workdir:
                result = await one_round(replicas, wait, Path(workdir))
            lines.append(json.dumps({"round": round_no, "commit": commit, **result}))
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = asyncio.run(run(args.rounds, commit, args.out))
    if args.out:
        with open(args.out, "a") as out:
            out.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
