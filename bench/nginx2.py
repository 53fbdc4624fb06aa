"""A 2-process deployment behind nginx for the benchmark: ``server.py cluster``'s launcher, with benchmark limits.

    .venv/bin/python bench/nginx2.py --port PORT [--processes 2] [-- SERVER FLAGS...]

Starts what ``server.py cluster --processes 2 --port PORT`` starts (its own
redis-server from config/redis.conf, the chat processes, nginx from
config/nginx.conf), through the launcher's own ``ops.cluster.Cluster``, with two
differences the command line cannot express today:

- the server flags after ``--`` reach every chat process (``Cluster.extra_args``;
  the CLI has no way to pass them), and the cookie secret comes from
  CHAT_COOKIE_SECRET when set;
- nginx's per-address WebSocket limit (``limit_conn per_client 100``) and its
  4,096 ``worker_connections`` are raised: every loadgen client comes from
  127.0.0.1, so the deployment's per-address limit would measure itself (the
  same reason the chat processes get ``--max-connections-per-client 100000``).

SIGTERM or SIGINT stops everything it started. compare.py measures this process's
whole tree (nginx, Redis and both chat processes), so "server CPU" includes Redis.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.cluster import Cluster, ClusterError  # noqa: E402

# One loadgen opens up to 10,000 sockets from 127.0.0.1; each is two nginx connections.
BENCH_LIMIT_CONN = "limit_conn per_client 60000;"
BENCH_WORKER_CONNECTIONS = "worker_connections 30000;"


class BenchCluster(Cluster):
    """The launcher's deployment with nginx's per-address and per-worker limits lifted (see the module doc)."""

    def nginx_config(self) -> str:
        text = super().nginx_config()
        for pattern, new in (
            (r"limit_conn per_client \d+;", BENCH_LIMIT_CONN),
            (r"worker_connections \d+;", BENCH_WORKER_CONNECTIONS),
            (r"worker_rlimit_nofile \d+;", "worker_rlimit_nofile 65536;"),
        ):
            text, found = re.subn(pattern, new, text)
            if not found:
                # config/nginx.conf changed: fail loudly rather than measure the limit.
                raise ClusterError(f"bench/nginx2.py: {pattern!r} not found in the nginx config; update BenchCluster")
        return text


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # Kept when starting fails, so that the logs it names can be read.
    run_dir = Path(tempfile.mkdtemp(prefix="bench-nginx2-"))
    cluster = BenchCluster(args.processes, args.port, run_dir, python=sys.executable, extra_args=extra)
    secret = os.environ.get("CHAT_COOKIE_SECRET")
    if secret:
        cluster.cookie_secret = secret
    try:
        cluster.start()
    except ClusterError as exc:
        print(f"nginx2: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"nginx2: serving on {cluster.url}", flush=True)
    stop.wait()
    cluster.stop()
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
