"""CPU per delivery, two trees in one run: bench/data_file_cpu.py's scenario (20 rooms x 10 clients,
40 messages a second per room, 100-byte texts) on the in-process bus or on Redis, alternating.

    git archive 6e88064 | tar -x -C /tmp/ab/base; git archive HEAD | tar -x -C /tmp/ab/head
    flock /tmp/bench.lock .venv/bin/python bench/experiments/issue25_cpu_ab.py /tmp/ab/base /tmp/ab/head --bus memory
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import bench.data_file_cpu as cpu  # noqa: E402
import tests.processes as processes  # noqa: E402
from tests.services import RedisServer  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("head")
    parser.add_argument("--bus", choices=["memory", "redis"], default="memory")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    trees = {"base": Path(args.base), "head": Path(args.head)}
    results: dict[str, list[float]] = {"base": [], "head": []}
    plain_init = processes.ServerProcess.__init__
    for round_no in range(args.rounds):
        for name in ["base", "head"] if round_no % 2 == 0 else ["head", "base"]:
            processes.ROOT = trees[name]  # the server.py this round runs
            with tempfile.TemporaryDirectory() as work:
                redis = RedisServer(Path(work) / "redis").start() if args.bus == "redis" else None
                if redis is not None:
                    url = redis.url()

                    def with_redis(self, flags, log, port=None, env=None):  # type: ignore[no-untyped-def]
                        plain_init(self, [*flags, "--redis-url", url], log, port, env)

                    processes.ServerProcess.__init__ = with_redis  # type: ignore[method-assign]
                try:
                    us = await cpu.one_run(False, args, Path(work))
                finally:
                    processes.ServerProcess.__init__ = plain_init  # type: ignore[method-assign]
                    if redis is not None:
                        redis.stop()
            results[name].append(us)
            print(json.dumps({"round": round_no, "tree": name, "bus": args.bus, "us_per_delivery": round(us, 3)}))
    base, head = statistics.median(results["base"]), statistics.median(results["head"])
    print(f"{args.bus}: median µs per delivery base {base:.3f}, head {head:.3f}, ratio {head / base:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
