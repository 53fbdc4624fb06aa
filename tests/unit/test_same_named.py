"""config/same_named.py: the Redis bus's options from the settings, the launcher's Cluster from its flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bus.redis import RedisOptions
from config.cli import load_settings
from config.same_named import same_named
from ops.cluster import Cluster
from ops.cluster_cli import build_parser
from runtime.chat_server import redis_options

# RedisOptions field -> (the setting it comes from, a value unlike the option's default)
REDIS_OPTIONS: dict[str, tuple[str, Any]] = {
    "url": ("redis_url", "redis://127.0.0.1:7000/0"),
    "node_id": ("node_id", "node-7"),
    "cluster": ("redis_cluster", True),
    "prefix": ("redis_prefix", "tenant"),
    "retention": ("retention", 77),
    "resend_window": ("resend_window", 12.5),
    "room_ttl": ("room_ttl", 99.0),
    "history_bytes": ("history_bytes", 4096),
    "timeout": ("redis_timeout", 3.5),
    "presence_timeout": ("presence_timeout", 44.0),
    "wait_replicas": ("redis_wait_replicas", 2),
    "wait_timeout_ms": ("redis_wait_timeout", 250),
    "rate_limit": ("rate_limit", 6.0),
    "rate_burst": ("rate_burst", 9),
}


def test_each_redis_option_comes_from_its_setting() -> None:
    assert set(REDIS_OPTIONS) == {f.name for f in dataclasses.fields(RedisOptions)}
    settings = dataclasses.replace(load_settings([], {}), **dict(REDIS_OPTIONS.values()))
    options = redis_options(settings)
    defaults = RedisOptions(url="", node_id="")
    for option, (setting, value) in REDIS_OPTIONS.items():
        # Unlike the default: an option the settings never reached would show.
        assert getattr(options, option) == value != getattr(defaults, option), (option, setting)


def test_every_launcher_flag_reaches_the_cluster(tmp_path: Path) -> None:
    argv = ["--processes", "4", "--port", "9090", "--host", "0.0.0.0", "--redis-url", "redis://r:1/0"]
    argv += ["--redis-cluster", "--user", "u1", "--redis-user", "u2", "--nginx-user", "u3"]
    args = build_parser().parse_args(argv)
    cluster = same_named(Cluster, args, run_dir=tmp_path)
    assert (cluster.processes, cluster.port, cluster.host, cluster.run_dir) == (4, 9090, "0.0.0.0", tmp_path)
    assert (cluster.redis_url, cluster.redis_cluster) == ("redis://r:1/0", True)
    assert (cluster.user, cluster.redis_user, cluster.nginx_user) == ("u1", "u2", "u3")
    # A new flag must be a Cluster field of the same name, or it would be dropped on the way.
    assert set(vars(args)) <= {f.name for f in dataclasses.fields(Cluster)}


def test_given_values_win_and_what_neither_has_keeps_its_default() -> None:
    @dataclasses.dataclass
    class Options:
        a: int
        b: int = 2
        c: int = 3

    source = type("Source", (), {"a": 10, "b": 20, "unrelated": 0})()
    assert same_named(Options, source, b=5) == Options(10, 5, 3)
    with pytest.raises(TypeError):
        same_named(dict, source)
