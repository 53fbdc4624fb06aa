"""``python server.py cluster``: a real deployment on one machine, for trying it out.

Starts, in order, redis-server from ``config/redis.conf`` on a free loopback
port with its data in a directory of its own (skipped with ``--redis-url``),
N chat processes on free ports with distinct node ids (``node-1`` ...), and
nginx from ``config/nginx.conf`` on the public port. SIGINT or SIGTERM stops
everything it started, in the reverse order, and exits 0; SIGHUP does a
rolling restart (each chat process in turn: SIGTERM, wait, start again under
the same port and node id, wait until healthy).

Privileges: run as root, the launcher keeps root only for itself and
nginx's master (which binds the port); three unprivileged users run the
rest (ops/users.py): nginx's workers as ``--nginx-user`` (``www-data``),
redis-server as ``--redis-user`` (``redis``) and the chat processes as
``--user`` (``nobody``): started as that user when it can run this Python,
else (an interpreter under root's home cannot be run by ``nobody``) started
as root and dropping to that user themselves once listening, with every
module loaded.
Redis requires a password generated for each run; it reaches redis-server in
a config file only Redis's user can read, and the chat processes in their
environment (readable by their own user alone), never on a command line.
The parts: ops/cluster_redis.py (Redis), ops/cluster_nginx.py (nginx),
ops/cluster_service.py (what they share); the command line is
ops/cluster_cli.py.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ops.cluster_nginx import nginx_config, nginx_server
from ops.cluster_redis import REDIS_CONF, local_cluster, redis_server, redis_url
from ops.cluster_service import ROOT, START_TIMEOUT, ClusterError, service
from ops.process_runner import Process, ProcessError, free_port, http_ok, port_open
from ops.redis_cluster import LocalRedisCluster, RedisClusterError
from ops.scrape_targets import TARGETS, write_targets
from ops.users import DEFAULT_CHAT_USER, DEFAULT_NGINX_USER, DEFAULT_REDIS_USER, RunAs, ServiceUsers, UsersError


@dataclass
class ChatNode:
    service: Process
    port: int


@dataclass
class Cluster:
    processes: int
    port: int
    run_dir: Path
    redis_url: str | None = None
    redis_cluster: bool = False  # a local Redis Cluster (3 masters, 3 replicas) instead of one redis-server
    host: str = "127.0.0.1"
    python: str = sys.executable
    extra_args: list[str] = field(default_factory=list)
    cookie_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    user: str = DEFAULT_CHAT_USER  # who runs the chat processes when the launcher is root
    redis_user: str = DEFAULT_REDIS_USER  # ... Redis
    nginx_user: str = DEFAULT_NGINX_USER  # ... nginx's workers
    run_as: RunAs | None = None  # the chat processes' user (as root)
    users: ServiceUsers | None = None  # every service's user (as root)
    chat_run_as: RunAs | None = None  # run_as when it can start this Python itself
    warnings: list[str] = field(default_factory=list)
    work_dir: Path | None = None  # Redis data and nginx temp files: the run dir, if the user can reach it
    redis: Process | None = None
    local_cluster: LocalRedisCluster | None = None
    nodes: list[ChatNode] = field(default_factory=list)
    nginx: Process | None = None
    targets_file: Path | None = None  # Prometheus file_sd targets: every chat process's /metrics

    def start(self) -> None:
        """Start Redis, the chat processes and nginx; on any failure stop what started."""
        try:
            self._drop_privileges()
            self._start_redis()
            for index in range(1, self.processes + 1):
                self._start_node(index)
            self._start_nginx()
            self.targets_file = write_targets(self.run_dir / TARGETS, [(n.service.name, n.port) for n in self.nodes])
        except ProcessError as exc:
            self.stop()
            raise ClusterError(str(exc)) from None
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _drop_privileges(self) -> None:
        """As root: pick the services' users (ops/users.py), and let them into the run directory (but not list it)."""
        if os.geteuid() != 0:
            return
        try:
            self.users = ServiceUsers.lookup(self.user, self.redis_user, self.nginx_user)
            self.users.check_checkout(
                {
                    "the chat processes": ROOT / "templates" / "base.html",
                    "Redis": REDIS_CONF,
                    "nginx": ROOT / "static" / "chat.css",
                }
            )
        except UsersError as exc:
            raise ClusterError(str(exc)) from None
        self.run_as = self.users.chat
        self.run_dir.chmod(0o711)
        if not all(user.can_run(["test", "-x", str(self.run_dir)]) for user in (self.users.redis, self.users.nginx)):
            # A run dir under a private parent (root's home, pytest's temp): the
            # services' files go to a directory of their own that they can reach.
            self.work_dir = Path(tempfile.mkdtemp(prefix="chat-cluster-work-"))
            self.work_dir.chmod(0o711)
            self.warnings.append(
                f"user {self.redis_user} or {self.nginx_user} cannot reach {self.run_dir}; data in {self.work_dir}"
            )
        if self.run_as.can_run([self.python, "-c", "import tornado, redis, structlog"]):
            self.chat_run_as = self.run_as
        else:
            self.warnings.append(
                f"chat processes start as {pwd.getpwuid(os.geteuid()).pw_name} and become {self.user} once "
                f"listening, because {self.user} cannot run {self.python}. To start them as {self.user}, make "
                f"the virtualenv readable by it (chmod -R o+rX on it, o+x on each directory above it), or make "
                f"one where it can read it (python3 -m venv /opt/chat-venv; /opt/chat-venv/bin/pip install "
                f"-r requirements.txt) and run the launcher with that Python"
            )

    def _start_redis(self) -> None:
        """Redis for the chat processes, held before it starts so that stop() reaches it if it never comes up."""
        if self.redis_url:
            return
        owner = self.users.redis if self.users is not None else None
        work_dir = self.work_dir or self.run_dir
        if self.redis_cluster:
            self.local_cluster = local_cluster(work_dir, self.redis_password, owner)
            try:
                self.local_cluster.start()
            except RedisClusterError as exc:
                raise ClusterError(str(exc)) from None
            self.redis_url = self.local_cluster.url
            return
        port = free_port()
        self.redis = redis_server(port, self.run_dir, work_dir, self.redis_password, owner)
        self.redis.start().wait_healthy(lambda: port_open(port), START_TIMEOUT)
        self.redis_url = redis_url(port, self.redis_password)

    def _start_node(self, index: int) -> None:
        port = free_port()
        # Secrets go through the environment: a command line is visible to every user.
        env = dict(
            os.environ,
            REDIS_URL=self.redis_url or "",
            CHAT_REDIS_CLUSTER="true" if self.redis_cluster else "false",
            CHAT_COOKIE_SECRET=self.cookie_secret,
            CHAT_BEHIND_PROXY="true",
            CHAT_LOG_FORMAT="json",
        )
        argv = [
            self.python,
            str(ROOT / "server.py"),
            "--port",
            str(port),
            "--node-id",
            f"node-{index}",
            *self.extra_args,
        ]
        if self.run_as is not None and self.chat_run_as is None:
            env["CHAT_RUN_AS"] = (
                self.run_as.name
            )  # the process drops to it itself (runtime/process.py, drop_privileges)
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            env["CHAT_ALLOWED_HOSTS"] = "*"  # nginx on a public address: its clients use real host names
        node = ChatNode(service(f"node-{index}", argv, env, self.run_dir / f"node-{index}.log", self.chat_run_as), port)
        node.service.start()
        self.nodes.append(node)
        self._wait_healthy(node)

    def _wait_healthy(self, node: ChatNode) -> None:
        url = f"http://127.0.0.1:{node.port}/healthz"
        node.service.wait_healthy(lambda: http_ok(url), START_TIMEOUT)

    def _start_nginx(self) -> None:
        config = self.run_dir / "nginx.conf"
        config.write_text(self.nginx_config())
        self.nginx = nginx_server(config, self.run_dir)
        self.nginx.start().wait_healthy(lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz"), START_TIMEOUT)

    def nginx_config(self) -> str:
        """config/nginx.conf for this run (bench/nginx2.py lifts its limits in a subclass)."""
        workers = self.users.nginx if self.users is not None else None
        listen = f"{self.host}:{self.port}"
        ports = [node.port for node in self.nodes]
        return nginx_config(listen, ports, self.run_dir, self.work_dir or self.run_dir, workers)

    def rolling_restart(self) -> None:
        """Restart each chat process in turn; the others carry the room meanwhile."""
        for node in self.nodes:
            node.service.stop(signal.SIGTERM)
            node.service.start()
            self._wait_healthy(node)

    def stop(self) -> None:
        """Stop in reverse order: nginx first so no new connection reaches a stopping process."""
        if self.nginx is not None:
            self.nginx.stop(signal.SIGQUIT)
        for node in reversed(self.nodes):
            node.service.stop(signal.SIGTERM)
        if self.redis is not None:
            self.redis.stop(signal.SIGTERM)  # redis-server flushes its AOF on SIGTERM
        if self.local_cluster is not None:
            self.local_cluster.stop()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)  # ours alone, made for this run
