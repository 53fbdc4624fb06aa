"""The shared harness's scenarios on one Redis and on a local Redis Cluster, in the same session.

    .venv/bin/python bench/cluster_rooms.py OUT.jsonl [--rounds 3] [--scenarios rooms]

Starts a local cluster (ops/redis_cluster.py: 3 masters, 3 replicas) once,
then for each round runs ``../shared/bench/compare.py`` for
``this_server_redis`` (compare.py starts its own redis-server) and
``this_server_redis_cluster`` (``--redis-cluster``, a fresh key prefix per run),
in alternating order so that drift in the machine's load hits both alike.
compare.py's JSON lines go to OUT; summarise them with
``python3 bench/summarize.py OUT``. Loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.redis_cluster import LocalRedisCluster  # noqa: E402

SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared" / "bench"))
PY = os.environ.get("PY", str(ROOT / ".venv" / "bin" / "python"))
# The load generator's clients all come from 127.0.0.1 and send faster than a
# person: the per-address limits (issue 10) would measure themselves.
UNLIMITED = (
    "--rate-limit 0 --client-rate-limit 0 --join-rate 0 --room-create-rate 0 --max-connections-per-client 100000"
)
COMPARE_ARGS = os.environ.get("COMPARE_ARGS", "--step-duration 4 --step-warmup 1 --refine 2").split()


def compare(name: str, server: str, scenario: str, out: str, *extra: str) -> None:
    command = [
        PY,
        str(SHARED / "compare.py"),
        "--name",
        name,
        "--port",
        "8805",
        "--redis-port",
        "6392",
        "--scenarios",
        scenario,
        *COMPARE_ARGS,
        *extra,
        "--server",
        server,
        "--out",
        out,
    ]
    print(f"== {name} {scenario}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="rooms")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the cluster below is stopped
    single = f"{PY} server.py --port {{port}} --redis-url redis://127.0.0.1:{{redis_port}}/0 {UNLIMITED}"
    with tempfile.TemporaryDirectory() as workdir:
        cluster = LocalRedisCluster(Path(workdir))
        cluster.start()
        try:
            for round_no in range(1, args.rounds + 1):
                for scenario in args.scenarios.split(","):
                    on_cluster = (
                        f"{PY} server.py --port {{port}} --redis-cluster --redis-url {cluster.url} "
                        f"--redis-prefix r{round_no}{scenario} {UNLIMITED}"
                    )
                    runs = [
                        ("this_server_redis", single, ()),
                        ("this_server_redis_cluster", on_cluster, ("--no-redis",)),
                    ]
                    for name, server, extra in runs if round_no % 2 else runs[::-1]:
                        compare(name, server, scenario, args.out, *extra)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
