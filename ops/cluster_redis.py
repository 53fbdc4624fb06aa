"""The launcher's Redis (ops/cluster.py): redis-server from config/redis.conf, or a local Redis Cluster.

Either gets this run's password, and the files of either are given to Redis's
own user when the launcher runs as root. The processes are returned not yet
started: the launcher holds them first, so that its stop reaches one that
fails to come up.
"""

from __future__ import annotations

import os
from pathlib import Path

from ops.cluster_service import ROOT, find_binary, service
from ops.process_runner import Process
from ops.redis_cluster import LocalRedisCluster
from ops.users import RunAs

REDIS_CONF = ROOT / "config" / "redis.conf"


def redis_server(port: int, run_dir: Path, work_dir: Path, password: str, owner: RunAs | None) -> Process:
    """redis-server on ``port``, its data in ``work_dir``, its log in ``run_dir``; run as ``owner`` if given."""
    data_dir = work_dir / "redis-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(work_dir / "redis.conf", port, data_dir, password, owner)
    argv = [find_binary("redis-server", "redis-server"), str(config)]
    return service("redis", argv, dict(os.environ), run_dir / "redis.log", owner)


def redis_url(port: int, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/0"


def write_config(config: Path, port: int, data_dir: Path, password: str, owner: RunAs | None) -> Path:
    """config/redis.conf plus this run's port, directory and password, readable by Redis's user alone.

    Mode 0600 and Redis's own user: neither the chat processes' user (they
    have the password in their environment) nor nginx's can read it.
    """
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"include {REDIS_CONF}\nport {port}\ndir {data_dir}\ndaemonize no\nrequirepass {password}\n")
    if owner is not None:
        owner.give(config)
        owner.give(data_dir)
    return config


def local_cluster(work_dir: Path, password: str, owner: RunAs | None) -> LocalRedisCluster:
    """A local Redis Cluster in the run's work directory, as ``owner`` if given, with this run's password."""
    directory = work_dir / "redis-cluster"
    directory.mkdir(parents=True, exist_ok=True)
    cluster = LocalRedisCluster(directory, password=password)
    if owner is not None:
        owner.give(directory)
        cluster.uid, cluster.gid = owner.uid, owner.gid
    return cluster
