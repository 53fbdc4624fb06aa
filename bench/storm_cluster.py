"""The deployment of bench/storm.py: ``server.py cluster``'s launcher, two chat processes of a chosen checkout.

``ops.cluster.Cluster`` (redis-server from config/redis.conf, the chat
processes, nginx from config/nginx.conf) with the chat processes' server.py
taken from ``root`` (a baseline checkout, as ``--root`` elsewhere in bench/),
and nginx fitted to this machine's descriptor limit: a hard limit of 20,000
that the bench cannot raise, while 10,000 clients are 20,000 descriptors in
nginx (client and upstream). So nginx runs two workers, each with its own
listening socket (``reuseport``: the kernel spreads the clients over them),
each under the limit. nginx's per-address limit stays as configured: every
client has an address of its own.
"""

from __future__ import annotations

import re
import resource
import shutil
import tempfile
from pathlib import Path

import ops.cluster
from ops.cluster import Cluster, ClusterError

SECRET = "storm-bench-cookie-secret-0123456789abcdef"


class StormCluster(Cluster):
    def nginx_config(self) -> str:
        text = super().nginx_config()
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100
        for pattern, new in (
            (r"worker_processes \d+;", "worker_processes 2;"),
            (r"worker_rlimit_nofile \d+;", f"worker_rlimit_nofile {limit};"),
            (r"worker_connections \d+;", f"worker_connections {limit - 100};"),
            (r"listen ([^;\s]+);", r"listen \1 reuseport;"),
        ):
            text, found = re.subn(pattern, new, text)
            if not found:  # config/nginx.conf changed: fail loudly rather than measure something else
                raise ClusterError(f"bench/storm_cluster.py: {pattern!r} not found in the nginx config")
        return text


def start(root: Path, port: int, server_args: list[str]) -> tuple[StormCluster, Path]:
    """Redis, node-1 and node-2 running ``root``'s server.py, and nginx on ``port``; (cluster, its run dir)."""
    ops.cluster.ROOT = root  # the chat processes' server.py (the launcher's own code stays this checkout's)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    cluster = StormCluster(2, port, run_dir, extra_args=server_args)
    cluster.cookie_secret = SECRET
    cluster.start()
    return cluster, run_dir


def stop(cluster: StormCluster, run_dir: Path) -> None:
    cluster.stop()
    shutil.rmtree(run_dir, ignore_errors=True)
