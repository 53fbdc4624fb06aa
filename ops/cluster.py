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
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import string
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ops.process_runner import Process, ProcessError, free_port, http_ok, port_open
from ops.redis_cluster import LocalRedisCluster, RedisClusterError
from ops.scrape_targets import TARGETS, write_targets
from ops.users import DEFAULT_CHAT_USER, DEFAULT_NGINX_USER, DEFAULT_REDIS_USER, RunAs, ServiceUsers, UsersError

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "config" / "nginx.conf"
REDIS_CONF = ROOT / "config" / "redis.conf"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class ClusterError(RuntimeError):
    """A part of the cluster could not be started; the message says which."""


def find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ClusterError(f"{name} not found: install Debian's {package} package (apt-get install {package})")
    return found


def _service(name: str, argv: list[str], env: dict[str, str], log_path: Path, run_as: RunAs | None) -> Process:
    """A child in a process group of its own, so that a stop reaches all of it."""
    ids = (run_as.uid, run_as.gid) if run_as is not None else None
    return Process(name, argv, env, log_path=log_path, own_group=True, run_as=ids)


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
        if self.redis_url:
            return
        if self.redis_cluster:
            self._start_redis_cluster()
            return
        port = free_port()
        data_dir = (self.work_dir or self.run_dir) / "redis-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = self._redis_config(port, data_dir)
        argv = [find_binary("redis-server", "redis-server"), str(config)]
        redis_user = self.users.redis if self.users is not None else None
        self.redis = _service("redis", argv, dict(os.environ), self.run_dir / "redis.log", redis_user)
        self.redis.start().wait_healthy(lambda: port_open(port), START_TIMEOUT)
        self.redis_url = f"redis://:{self.redis_password}@127.0.0.1:{port}/0"

    def _start_redis_cluster(self) -> None:
        """A local Redis Cluster in the run's work directory, as the services' user, with this run's password."""
        directory = (self.work_dir or self.run_dir) / "redis-cluster"
        directory.mkdir(parents=True, exist_ok=True)
        self.local_cluster = LocalRedisCluster(directory, password=self.redis_password)
        if self.users is not None:
            self.users.redis.give(directory)
            self.local_cluster.uid, self.local_cluster.gid = self.users.redis.uid, self.users.redis.gid
        try:
            self.local_cluster.start()
        except RedisClusterError as exc:
            raise ClusterError(str(exc)) from None
        self.redis_url = self.local_cluster.url

    def _redis_config(self, port: int, data_dir: Path) -> Path:
        """config/redis.conf plus this run's port, directory and password, readable by Redis's user alone.

        Mode 0600 and Redis's own user: neither the chat processes' user (they
        have the password in their environment) nor nginx's can read it.
        """
        config = (self.work_dir or self.run_dir) / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                f"include {REDIS_CONF}\nport {port}\ndir {data_dir}\ndaemonize no\nrequirepass {self.redis_password}\n"
            )
        if self.users is not None:
            self.users.redis.give(config)
            self.users.redis.give(data_dir)
        return config

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
            env["CHAT_RUN_AS"] = self.run_as.name  # the process drops to it itself (server.drop_privileges)
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            env["CHAT_ALLOWED_HOSTS"] = "*"  # nginx on a public address: its clients use real host names
        node = ChatNode(
            _service(f"node-{index}", argv, env, self.run_dir / f"node-{index}.log", self.chat_run_as), port
        )
        node.service.start()
        self.nodes.append(node)
        self._wait_healthy(node)

    def _wait_healthy(self, node: ChatNode) -> None:
        url = f"http://127.0.0.1:{node.port}/healthz"
        node.service.wait_healthy(lambda: http_ok(url), START_TIMEOUT)

    def _start_nginx(self) -> None:
        config = self.run_dir / "nginx.conf"
        config.write_text(self.nginx_config())
        argv = [find_binary("nginx", "nginx"), "-c", str(config), "-p", str(self.run_dir)]
        self.nginx = _service("nginx", argv, dict(os.environ), self.run_dir / "nginx.log", None)
        self.nginx.own_log = self.run_dir / "nginx-error.log"
        self.nginx.start().wait_healthy(lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz"), START_TIMEOUT)

    def nginx_config(self) -> str:
        # max_fails=0: never mark a process down, try it again on the next
        # request. A process that is restarting refuses at once, and nginx
        # moves on to the next one (proxy_next_upstream); with the default
        # (down for 10 s) a rolling restart would leave nginx none to offer.
        servers = "\n".join(f"        server 127.0.0.1:{node.port} max_fails=0;" for node in self.nodes)
        # As root, the master keeps root to bind the port; its workers, which
        # talk to clients, run as the unprivileged user (the run directory lets them in).
        nginx = self.users.nginx if self.users is not None else None
        user_line = f"user {nginx.name} {nginx.group};" if nginx is not None else ""
        # safe_substitute leaves nginx's own $variables alone; ours are ${braced}.
        text = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
            user_line=user_line,
            run_dir=self.run_dir,
            work_dir=self.work_dir or self.run_dir,
            listen=f"{self.host}:{self.port}",
            upstream_servers=servers,
            static_dir=ROOT / "static",
            mime_types=_mime_types(),
        )
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        if "${" in body:
            raise ClusterError(f"{NGINX_TEMPLATE} has a ${{...}} value the launcher does not know")
        return text

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


def _mime_types() -> str:
    for candidate in ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types"):
        if Path(candidate).exists():
            return candidate
    raise ClusterError("nginx's mime.types not found: is Debian's nginx package installed?")


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
    cluster = Cluster(
        args.processes,
        args.port,
        run_dir,
        redis_url=args.redis_url,
        redis_cluster=args.redis_cluster,
        host=args.host,
        user=args.user,
        redis_user=args.redis_user,
        nginx_user=args.nginx_user,
    )
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
