"""A local Redis Cluster of real redis-server processes: 3 masters, 3 replicas by default.

For trying the cluster bus on one machine (``server.py cluster --redis-cluster``)
and for the tests. Each node runs Debian's redis-server in a directory of its
own on a free loopback port, with ``cluster-enabled yes`` and append-only
persistence; ``redis-cli --cluster create`` assigns the 16384 slots to the
masters and a replica to each. A node can be killed (SIGKILL, as in a crash)
and started again on its port and directory: it rejoins as a replica of
whichever node took over.

``node_timeout_ms`` is how long the others wait before they fail a silent
master over to its replica; a user's messages to rooms of that master pause
for about that long plus a second (see the README's "Deploying").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import redis

from ops.process_runner import Process, ProcessError, RunsOneProcess, free_port

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class RedisClusterError(ProcessError):
    """A node or the cluster did not come up; the message says what to do."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RedisClusterError(
            f"{name} not found: install Debian's redis-server package (apt-get install redis-server)"
        )
    return found


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)


@dataclass
class ClusterNode(RunsOneProcess):
    port: int
    directory: Path
    runner: Process | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    uid: int | None = None  # run as this user and group (the launcher, started as root)
    gid: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, extra: Sequence[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            _binary("redis-server"),
            str(self._config()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--appendonly",
            "yes",
            "--save",
            "",
            *extra,
        ]
        ids = (self.uid, os.getgid() if self.gid is None else self.gid) if self.uid is not None else None
        log = self.directory / "redis.log"
        self.runner = Process(f"redis-server on port {self.port}", command, cwd=self.directory, own_log=log, run_as=ids)
        try:
            self.runner.start().wait_healthy(self.answers, START_TIMEOUT)
        except ProcessError as exc:
            raise RedisClusterError(str(exc)) from None

    def _config(self) -> Path:
        """The password in a file only the node's user reads: a command line is visible to every user."""
        config = self.directory / "auth.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            if self.password:
                handle.write(f"requirepass {self.password}\nmasterauth {self.password}\n")
        if self.uid is not None:
            os.chown(config, self.uid, self.gid or -1)
            os.chown(self.directory, self.uid, self.gid or -1)
        return config

    def answers(self) -> bool:
        try:
            with _client(self.port, self.password) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def info(self, section: str) -> dict[str, str]:
        with _client(self.port, self.password) as client:
            if section == "cluster":
                return {k: str(v) for k, v in client.cluster("info").items()}
            return dict(client.info(section))

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()


@dataclass
class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports under ``directory``."""

    directory: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 2000
    extra_args: list[str] = field(default_factory=list)
    nodes: list[ClusterNode] = field(default_factory=list)
    password: str | None = field(default=None, repr=False)  # every node's requirepass and masterauth
    uid: int | None = None  # the nodes' user and group, when started as root
    gid: int | None = None

    @property
    def url(self) -> str:
        """One node's URL: the bus discovers the others (``--redis-url`` with ``--redis-cluster``)."""
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}{self.nodes[0].address}"

    def start(self) -> "LocalRedisCluster":
        args = ["--cluster-node-timeout", str(self.node_timeout_ms), *self.extra_args]
        count = self.masters * (1 + self.replicas)
        self.nodes = [
            ClusterNode(
                free_port(also_free_at=10000),
                self.directory / f"node-{k}",
                password=self.password,
                uid=self.uid,
                gid=self.gid,
            )
            for k in range(count)
        ]
        try:
            for node in self.nodes:
                self._start_on_a_free_pair(node, args)
            self._create()
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _start_on_a_free_pair(node: ClusterNode, args: Sequence[str], tries: int = 3) -> None:
        """Start ``node``, on fresh ports if another process took its pair between the draw and the bind."""
        for attempt in range(tries):
            try:
                node.start(args)
                return
            except RedisClusterError as exc:
                if "Address already in use" not in str(exc) or attempt == tries - 1:
                    raise
                node.port = free_port(also_free_at=10000)

    def _create(self) -> None:
        command = [
            _binary("redis-cli"),
            "--cluster",
            "create",
            *[n.address for n in self.nodes],
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        env = dict(os.environ, REDISCLI_AUTH=self.password) if self.password else None  # never on argv
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT, env=env)
        if done.returncode != 0:
            raise RedisClusterError(f"redis-cli --cluster create failed: {done.stdout[-800:]} {done.stderr[-400:]}")

    def wait_ok(self, timeout: float = START_TIMEOUT) -> None:
        """Until every running node says the cluster is ok and every slot has a master that answers."""
        deadline = time.monotonic() + timeout
        while not self._all_ok():
            if time.monotonic() > deadline:
                raise RedisClusterError(f"the cluster did not become ok within {timeout:.0f} s")
            time.sleep(0.1)  # polling CLUSTER INFO, bounded by the deadline

    def _all_ok(self) -> bool:
        try:
            running = [node for node in self.nodes if node.running]
            if any(node.info("cluster").get("cluster_state") != "ok" for node in running):
                return False
            masters = self.master_ports()
            if len(masters) != self.masters or not all(self.node(port).running for port in masters):
                return False
            # Replicas linked and in sync, or a WAIT right after start would count none of them.
            replicas = sum(1 for node in running if node.port not in masters)
            return sum(self._online_replicas(port) for port in masters) >= replicas
        except (redis.RedisError, OSError):
            return False

    def _online_replicas(self, port: int) -> int:
        info = self.node(port).info("replication")
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
        )

    def slots(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) as a running node sees them."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with _client(node.port, self.password) as client:
                    ranges = client.execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            found: list[tuple[int, int, int]] = []
            for entry in ranges:
                if isinstance(entry, dict):  # redis-py may parse CLUSTER SLOTS into a dict
                    return [(int(a), int(b), int(v["primary"][1])) for (a, b), v in entry.items()]
                found.append((int(entry[0]), int(entry[1]), int(entry[2][1])))
            return found
        raise RedisClusterError("no node of the cluster answers")

    def master_ports(self) -> set[int]:
        return {port for _, _, port in self.slots()}

    def master_of(self, key: str) -> int:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for first, last, port in self.slots():
            if first <= slot <= last:
                return port
        raise RedisClusterError(f"slot {slot} has no master")

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def restart_node(self, port: int) -> None:
        """Start a killed node again on its port and data: it rejoins the cluster by itself."""
        self.node(port).start(["--cluster-node-timeout", str(self.node_timeout_ms), *self.extra_args])

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
