"""External services for tests: a real redis-server on a free loopback port.

``RedisServer`` runs Debian's ``redis-server`` binary in a directory of its
own; tests stop, kill and restart it on the same port to exercise failures.
Nothing here fakes Redis: without the binary, starting fails with a message
that says what to install.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Sequence

import redis

from ops.process_runner import Process, ProcessError, ProcessExited, RunsOneProcess, free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class ServiceError(ProcessError):
    """A service binary is missing or did not start; the message says what to do."""


def _serving(port: int, pid: int) -> bool:
    """True when the Redis answering on the port is process ``pid`` and has loaded its data."""
    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return int(client.info("server")["process_id"]) == pid
    except (redis.RedisError, OSError):
        return False  # not listening yet, or still LOADING


class RedisServer(RunsOneProcess):
    """One redis-server process: start, stop (graceful), kill (SIGKILL), restart on the same port.

    By default nothing is persisted (``--save ""``, ``--appendonly no``), so a
    restart comes back empty; pass ``["--appendonly", "yes"]`` for a Redis
    that keeps its data across restarts (in ``directory``).
    """

    def __init__(self, directory: Path, args: Sequence[str] = (), binary: str = "redis-server") -> None:
        self.directory = Path(directory)
        self.args = list(args)
        self.binary = binary
        self.port: int | None = None
        self.runner: Process | None = None

    def url(self, db: int = 0) -> str:
        if self.port is None:
            raise ServiceError("redis-server was never started")
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, port: int | None = None, args: Sequence[str] | None = None) -> "RedisServer":
        """Start on ``port`` (a free one if None; the same one on restarts) and wait for PING."""
        path = shutil.which(self.binary)
        if path is None:
            raise ServiceError(
                f"{self.binary} not found on PATH: the Redis tests need a real Redis; "
                "install it with `apt-get install redis-server`"
            )
        if args is not None:
            self.args = list(args)
        self.directory.mkdir(parents=True, exist_ok=True)
        chosen = port or self.port
        for _ in range(3):  # a free port picked here may be taken before Redis binds it
            self.port = chosen or free_port()
            if self._spawn(path) or chosen:
                break
        if not self.running:
            raise ServiceError(f"redis-server did not start on port {self.port}: {self.log_tail()}")
        return self

    def _spawn(self, path: str) -> bool:
        """Run redis-server on self.port; True once it serves, False if it exited."""
        command = [path, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        command += ["--daemonize", "no", "--logfile", "redis.log"]
        for option, default in (("--save", ""), ("--appendonly", "no")):
            if option not in self.args:
                command += [option, default]
        command += self.args
        log = self.directory / "redis.log"
        runner = self.runner = Process("redis-server", command, cwd=self.directory, own_log=log).start()
        try:
            runner.wait_healthy(lambda: _serving(int(self.port or 0), runner.pid), START_TIMEOUT)
        except ProcessExited:
            return False
        except ProcessError as exc:
            raise ServiceError(str(exc)) from None
        return True

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM): with append-only on, everything written is on disk."""
        if self.runner is not None:
            self.runner.stop(signal.SIGTERM, STOP_TIMEOUT)

    def restart(self, args: Sequence[str] | None = None) -> None:
        """Stop gracefully and start again on the same port and directory."""
        self.stop()
        self.start(self.port, args)
