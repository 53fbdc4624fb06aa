"""``python server.py cluster``'s command line: its flags, what it prints, and the supervising loop.

The deployment itself (what starts, in which order, as whom) is ops/cluster.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from config.same_named import same_named
from ops.cluster import Cluster, ClusterError
from ops.users import DEFAULT_CHAT_USER, DEFAULT_NGINX_USER, DEFAULT_REDIS_USER

_DESCRIPTION = """\
A chat deployment on this machine, for trying it out: redis-server (from
config/redis.conf, on a free loopback port, its data in the run directory;
not with --redis-url), N chat processes on free ports (node-1 ... node-N)
and nginx (config/nginx.conf) on the public port in front of them."""

_EPILOG = """\
signals:
  Ctrl-C, SIGTERM   stop everything it started (nginx, the processes, Redis); exit 0
  SIGHUP            rolling restart: each chat process in turn, the others carry the rooms

Each part logs to a file of its own in the run directory; the launcher prints
where, and restarts a chat process that exits on its own."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py cluster",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--processes", type=int, default=3, help="chat processes (default 3)")
    parser.add_argument("--port", type=int, default=8080, help="public port of nginx (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address nginx listens on (default 127.0.0.1)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one (default: start one)")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="start a local Redis Cluster (3 masters, 3 replicas) instead of one Redis; "
        "with --redis-url: that URL names a node of a cluster",
    )
    parser.add_argument("--run-dir", help="configs, logs and Redis data (default: a new directory under /tmp)")
    parser.add_argument(
        "--user",
        default=DEFAULT_CHAT_USER,
        help=f"unprivileged user for the chat processes when run as root (default {DEFAULT_CHAT_USER})",
    )
    parser.add_argument(
        "--redis-user", default=DEFAULT_REDIS_USER, help=f"another one for Redis (default {DEFAULT_REDIS_USER})"
    )
    parser.add_argument(
        "--nginx-user",
        default=DEFAULT_NGINX_USER,
        help=f"another one for nginx's workers (default {DEFAULT_NGINX_USER}); the three must differ",
    )
    return parser


def log_files(cluster: Cluster) -> list[tuple[str, Path]]:
    """(part, log file) for every part the launcher started, in start order."""
    files: list[tuple[str, Path]] = []
    if cluster.redis is not None and cluster.redis.log_path is not None:
        files.append(("redis", cluster.redis.log_path))
    if cluster.local_cluster is not None:
        files += [(f"redis {node.port}", node.directory / "redis.log") for node in cluster.local_cluster.nodes]
    files += [(node.service.name, node.service.log_path) for node in cluster.nodes if node.service.log_path is not None]
    files.append(("nginx", cluster.run_dir / "nginx-error.log"))
    return files


def print_started(cluster: Cluster) -> None:
    """The URL first (a script reads that line), then where each part logs."""
    print(
        f"chat cluster: open {cluster.url}chat/  ({cluster.processes} processes; "
        f"Ctrl-C stops everything, kill -HUP {os.getpid()} restarts them in turn)",
        flush=True,
    )
    print(f"  run dir {cluster.run_dir}", flush=True)
    for part, path in log_files(cluster):
        print(f"  {part + ' log':<12} {path}", flush=True)
    for node in cluster.nodes:  # each process on its own: /metrics is not served through nginx
        address = f"http://127.0.0.1:{node.port}/"
        print(f"  {node.service.name:<12} {address}  metrics {address}metrics", flush=True)
    print(f"  {'prometheus':<12} file_sd targets {cluster.targets_file}  (deploy/prometheus.yml)", flush=True)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.processes < 1:
        print("server.py cluster: --processes must be at least 1", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="chat-cluster-")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Each flag is the Cluster field of its name (--processes, --port, --host, --redis-url, ...).
    cluster = same_named(Cluster, args, run_dir=run_dir)
    signals: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: signals.append(number))
    try:
        cluster.start()
    except ClusterError as exc:
        print(f"server.py cluster: {exc}", file=sys.stderr)
        return 1
    print_started(cluster)
    for warning in cluster.warnings:
        print(f"chat cluster: warning: {warning}", flush=True)
    return _supervise(cluster, signals)


def _supervise(cluster: Cluster, signals: list[int]) -> int:
    """Wait for signals; restart a chat process that died on its own."""
    while True:
        while signals:
            number = signals.pop(0)
            if number != signal.SIGHUP:
                print("chat cluster: stopping", flush=True)
                cluster.stop()
                print("chat cluster: stopped", flush=True)
                return 0
            print("chat cluster: rolling restart", flush=True)
            cluster.rolling_restart()
            print("chat cluster: rolling restart done", flush=True)
        for node in cluster.nodes:
            if not node.service.running:
                print(
                    f"chat cluster: {node.service.name} exited ({node.service.exit_code()}); starting it again",
                    flush=True,
                )
                node.service.start()
        time.sleep(0.2)  # a supervisor's poll, not a test's wait
