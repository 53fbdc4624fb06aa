"""The memory growth attack of the second audit for a whole minute, with and without the bounds.

Five connections from one address, each sending a 16 KB message with a
client_id every 1/19 s (within the default 20 a second per user, and with a
bystander's two a second within the address's 100), moving to a new room every
``--per-room`` messages; tests/growth_attack.py is the driver. Each run starts
``server.py`` as a process of its own (default flags unless said) and samples
its RSS from /proc, or Redis's ``used_memory``, every 0.5 s. From the project root:

    flock /tmp/bench.lock .venv/bin/python bench/memory_growth.py [--seconds 60]

Runs, in one go: the in-process bus without bounds (``--history-bytes 0
--memory-budget 0``, as before them), with ``--memory-budget 32m``, and the
audit's exact shape (a new room every 1,000 messages) on the defaults; then
Redis with ``maxmemory 64mb`` (noeviction): refusals, /readyz, the peak of
``used_memory``, and after the limit is raised, /readyz again and every refused
message sent again with its client_id. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from tests.client import TEST_SECRET, ChatClient  # noqa: E402
from tests.growth_attack import TEXT, Attack, rss_bytes, send  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402
from tests.services import RedisServer  # noqa: E402

MiB = 1 << 20
RATE = 19.0  # messages a second per connection


async def server(work: Path, name: str, *flags: str) -> ServerProcess:
    process = ServerProcess(
        ["--log-format", "json", "--log-level", "warning", "--node-id", name, *flags],
        work / f"{name}.log",
        env={"CHAT_COOKIE_SECRET": TEST_SECRET},
    )
    return await process.start()


async def in_process(work: Path, name: str, seconds: float, per_room: int, *flags: str) -> dict[str, Any]:
    chat = await server(work, name, *flags)
    try:
        assert chat.process is not None
        pid = chat.process.pid
        started = rss_bytes(pid)
        attack = Attack(chat.port, per_room=per_room, rate=RATE, sample=lambda: rss_bytes(pid), sample_every=0.5)
        await attack.run(seconds)
        accepted = sum(len(ids) for ids in attack.acked.values())
        reader = await ChatClient.connect(chat.port, "bystander", user="reader")
        intact = [f["id"] for f in reader.history] == attack.bystander[-len(reader.history) :]
        reader.close()
        return {
            "run": name,
            "flags": " ".join(flags) or "(defaults)",
            "accepted": accepted,
            "text MB": round(accepted * len(TEXT.encode()) / 1e6, 1),
            "rooms": len(attack.acked),
            "RSS start MiB": round(started / MiB, 1),
            "RSS max MiB": round(max(attack.samples) / MiB, 1),
            "RSS end MiB": round(attack.samples[-1] / MiB, 1),
            "growth MiB/s (last half)": round(growth(attack.samples, 0.5) / MiB, 2),
            "bystander intact": intact,
        }
    finally:
        await chat.stop()


def growth(samples: list[float], every: float) -> float:
    """Bytes a second over the second half of the run (a bound shows as ~0)."""
    half = samples[len(samples) // 2 :]
    return (half[-1] - half[0]) / (every * max(1, len(half) - 1))


async def status(url: str) -> int:
    return (await AsyncHTTPClient().fetch(url, raise_error=False, request_timeout=5)).code


async def on_redis(work: Path, seconds: float) -> dict[str, Any]:
    store = RedisServer(work / "redis", ["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"]).start()
    client = redis.Redis.from_url(store.url(), decode_responses=True, socket_timeout=5)
    chat = await server(work, "redis", "--redis-url", store.url())
    try:
        keeper = await ChatClient.connect(chat.port, "kept", user="keeper")
        attack = Attack(chat.port, per_room=64, rate=RATE, sample=lambda: float(client.info("memory")["used_memory"]))
        attack.sample_every = 0.5
        running = asyncio.ensure_future(attack.run(seconds))
        statuses: list[tuple[float, int]] = []
        begun = time.monotonic()
        while not running.done():
            statuses.append((time.monotonic() - begun, await status(f"{chat.url}/readyz")))
            await asyncio.wait([running], timeout=0.5)
        await running
        peak = client.info("memory")["used_memory_peak"]
        first_refusal = next((t for t, code in statuses if code == 503), None)
        client.config_set("maxmemory", str(128 * MiB))
        freed = time.monotonic()
        while await status(f"{chat.url}/readyz") != 200:
            await asyncio.sleep(0.05)
        back_after = time.monotonic() - freed
        for refusal in attack.refused:
            again = await ChatClient.connect(chat.port, refusal.room, user=refusal.user)
            answer = await send(again, refusal.text, refusal.client_id)
            assert answer["type"] == "ack", answer
            attack.acked.setdefault(refusal.room, []).append(answer["id"])
            again.close()
        lost = 0
        for room, acked in attack.acked.items():
            stored = {entry_id for entry_id, _ in client.xrange(f"chat:{{{room}}}")}
            lost += len(set(acked) - stored)
        keeper.close()
        return {
            "accepted": sum(len(ids) for ids in attack.acked.values()) - len(attack.refused),
            "refused (unavailable)": len(attack.refused),
            "joins refused": attack.joins_refused,
            "closed by the server": len(attack.closed),
            "used_memory peak MiB": round(peak / MiB, 2),
            "maxmemory MiB": 64,
            "first /readyz 503 at s": first_refusal,
            "/readyz 503 samples": sum(1 for _, code in statuses if code == 503),
            "/readyz samples": len(statuses),
            "/readyz 200 again after s": round(back_after, 2),
            "refused, resent, stored": len(attack.refused),
            "accepted messages lost": lost,
        }
    finally:
        await chat.stop()
        client.close()
        store.stop()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        runs = [
            await in_process(work, "unbounded", args.seconds, 64, "--history-bytes", "0", "--memory-budget", "0"),
            await in_process(work, "budget", args.seconds, 64, "--memory-budget", "32m"),
            await in_process(work, "audit-shape", args.seconds, 1000),
        ]
        print("| " + " | ".join(runs[0]) + " |")
        print("|" + " --- |" * len(runs[0]))
        for run in runs:
            print("| " + " | ".join(str(value) for value in run.values()) + " |")
        print()
        ratio = runs[1]["RSS max MiB"] - runs[1]["RSS start MiB"]
        print(f"budget run: RSS rise {ratio:.1f} MiB for a 32 MiB budget; bound stated: 2 x 32 + 48 = 112 MiB")
        print()
        for key, value in (await on_redis(work, args.seconds)).items():
            print(f"- {key}: {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
