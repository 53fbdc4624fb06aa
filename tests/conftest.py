"""Fixtures: a real chat server on a free port, over each bus backend.

The server runs in the test's own IOLoop (pytest-tornado) so that tests
connect real WebSocket clients to it; it is stopped after the test.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Protocol, TypeVar

import pytest
import redis

from config.settings import Settings
from ops.cluster import Cluster
from ops.process_runner import ProcessError, free_port
from ops.redis_cluster import LocalRedisCluster
from runtime.chat_server import ChatServer
from tests.client import TEST_SECRET
from tests.processes import RawProcess, ServerProcess, StartRaw
from tests.services import RedisServer

# pytest-tornado 0.8.1 calls IOLoop.make_current(), deprecated since Tornado 6.2.
warnings.filterwarnings("ignore", message="make_current is deprecated", category=DeprecationWarning)

SECRET = TEST_SECRET
BACKENDS = ["memory", "redis", "cluster"]
# The protocol suites that also run on a local Redis Cluster; every
# other suite runs on the in-process bus and one Redis.
CLUSTER_SUITES = {"test_protocol.py", "test_presence.py", "test_history_changes.py", "test_api.py", "test_status.py"}
CLUSTER_SUITES |= {"test_memory_bounds.py"}  # --history-bytes: its trimming script on a cluster
REDIS_DATABASES = 1000  # one per test, reused round-robin after FLUSHDB

MakeServer = Callable[..., Awaitable[ChatServer]]


# Tests connect from one address, into many new rooms, far faster than a person:
# the join limits are off unless a test sets them (tests/test_floods.py does).
UNLIMITED_JOINS = {"CHAT_JOIN_RATE": "0", "CHAT_ROOM_CREATE_RATE": "0"}
for _name, _value in UNLIMITED_JOINS.items():
    os.environ.setdefault(_name, _value)  # the launcher's processes (ops/cluster.py) inherit it


def base_settings(**overrides: Any) -> Settings:
    settings = Settings(
        port=0,
        node_id="test-node",
        cookie_secret=SECRET,
        log_format="json",
        shutdown_timeout=2.0,
        join_rate=0,
        room_create_rate=0,
    )
    return dataclasses.replace(settings, **overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the cluster variant of the backend-parametrised tests only in CLUSTER_SUITES."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        on_cluster = "[cluster" in item.nodeid or "-cluster" in item.nodeid
        (drop if on_cluster and item.path.name not in CLUSTER_SUITES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def bus_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings that select the backend under test."""
    if backend == "redis":
        return request.getfixturevalue("redis_bus_settings")
    if backend == "cluster":
        return request.getfixturevalue("cluster_bus_settings")
    return {}


class _Service(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> Any: ...


S = TypeVar("S", bound=_Service)


def started(service: S) -> Iterator[S]:
    """A session's service, started (or the run fails saying what to install), stopped at the end."""
    try:
        service.start()
    except ProcessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """One local Redis Cluster (3 masters, 3 replicas) for the session; tests that fail nodes over start their own."""
    yield from started(LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")))


_prefixes = itertools.count(1)


@pytest.fixture
def cluster_bus_settings(redis_cluster: LocalRedisCluster) -> dict[str, Any]:
    """The session's cluster, under a key prefix of this test's own (a cluster has no database numbers)."""
    return {"redis_url": redis_cluster.url, "redis_cluster": True, "redis_prefix": f"t{next(_prefixes)}"}


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests that stop or restart Redis start their own."""
    yield from started(RedisServer(tmp_path_factory.mktemp("redis"), ["--databases", str(REDIS_DATABASES)]))


_redis_db = itertools.count(1)


@pytest.fixture
def start_raw() -> Iterator[StartRaw]:
    """Start ``server.py`` processes (tests/processes.py's RawProcess) once healthy; killed after the test."""
    started: list[RawProcess] = []

    async def start(stdout: Path | int, *args: str, nofile: int | None = None) -> RawProcess:
        if isinstance(stdout, Path):
            with stdout.open("wb") as log:
                server = RawProcess(log, *args, nofile=nofile)
        else:
            server = RawProcess(stdout, *args, nofile=nofile)
        started.append(server)
        await server.wait_healthy()
        return server

    yield start
    for server in started:
        server.runner.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop, pause and restart (the test starts it); killed after."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.kill()


@pytest.fixture
def redis_db(redis_service: RedisServer) -> str:
    """The URL of an empty database of the session's Redis, this test's alone."""
    url = redis_service.url(next(_redis_db) % REDIS_DATABASES)
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.flushdb()
    return url


@pytest.fixture
def redis_bus_settings(redis_db: str) -> dict[str, Any]:
    return {"redis_url": redis_db}


@pytest.fixture
def make_server(io_loop: Any, bus_settings: dict[str, Any]) -> Any:
    servers: list[ChatServer] = []

    async def make(**overrides: Any) -> ChatServer:
        server = ChatServer(base_settings(**{**bus_settings, **overrides}))
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        io_loop.run_sync(server.stop, timeout=10)


Spawn = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start real ``server.py`` processes on one Redis; all are killed after the test."""
    processes: list[ServerProcess] = []

    async def start(node: str, redis_url: str, *extra: str) -> ServerProcess:
        process = ServerProcess(
            ["--redis-url", redis_url, "--node-id", node, "--rate-limit", "0", "--log-format", "json", *extra],
            tmp_path / f"{node}.log",
            env={"CHAT_COOKIE_SECRET": SECRET},
        )
        processes.append(process)
        return await process.start()

    yield start
    for process in processes:
        process.resume()  # a test may have left it stopped (SIGSTOP)
        process.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The launcher's own deployment (ops.cluster): Redis, two server.py processes, nginx in front."""
    running = Cluster(processes=2, port=free_port(), run_dir=tmp_path, cookie_secret=SECRET)
    running.start()
    yield running
    running.stop()
