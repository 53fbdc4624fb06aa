"""Real ``server.py`` processes for tests: start on a free port, wait for /healthz, stop or kill.

Each process writes its stdout (JSON lines, unbuffered) to a file of its own
and its stderr beside it (``.stderr``: structlog owns stdout, so anything
here is a line that escaped it); tests read them back with ``lines()``,
``events()`` and ``stderr()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Sequence

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ops.process_runner import ROOT, Process, ProcessError, RunsOneProcess, free_port, http_ok_async
from tests.services import ServiceError

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
__all__ = ["ROOT", "ServerProcess"]


class ServerProcess(RunsOneProcess):
    """``python server.py --port P <args>``; ``restart`` keeps the port and the arguments."""

    def __init__(
        self, args: Sequence[str], log_path: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.env = dict(env or {})  # CHAT_* settings that belong in the environment (secrets)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.runner: Process | None = None

    @property
    def stderr_path(self) -> Path:
        return self.log_path.with_suffix(".stderr")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = START_TIMEOUT) -> "ServerProcess":
        """Spawn the process and wait until /healthz answers 200, or fail with its log."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_") and k != "REDIS_URL"}
        env["PYTHONUNBUFFERED"] = "1"
        # Tests connect from one address far faster than a person: join limits off unless set.
        env.update({"CHAT_JOIN_RATE": "0", "CHAT_ROOM_CREATE_RATE": "0"})
        env.update(self.env)
        argv = [sys.executable, str(ROOT / "server.py"), "--port", str(self.port), *self.args]
        self.runner = Process("server.py", argv, env, log_path=self.log_path, stderr_path=self.stderr_path).start()
        try:
            await self.runner.wait_healthy_async(lambda: http_ok_async(f"{self.url}/healthz"), timeout)
        except ProcessError as exc:
            raise ServiceError(str(exc)) from None
        return self

    async def restart(self) -> "ServerProcess":
        await self.stop()
        return await self.start()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait for the exit; SIGKILL after ``timeout``. Returns the exit code."""
        if self.runner is None:
            return None
        # The wait runs in a thread: the test's own event loop may serve what the process talks to.
        return await asyncio.to_thread(self.runner.stop, signal.SIGTERM, timeout)

    def lines(self) -> list[str]:
        """Every stdout line written so far."""
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def stderr(self) -> bytes:
        return self.stderr_path.read_bytes() if self.stderr_path.exists() else b""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (of one event name when given)."""
        found = []
        for line in self.lines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found


PROCESS_START = 20.0


class RawProcess:
    """``server.py`` (in-process bus) with stdout where the test wants it and an optional descriptor limit."""

    def __init__(self, stdout: Any, *args: str, nofile: int | None = None) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_") and k != "REDIS_URL"}

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        argv = [sys.executable, str(ROOT / "server.py"), "--port", str(self.port), "--node-id", "hostile"]
        argv += ["--log-format", "json", *args]
        self.runner = Process("server.py", argv, env, stdout=stdout, stderr_path=Path(os.devnull), preexec=limit)
        self.process = self.runner.start().process or _never_started()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self) -> None:
        await self.runner.wait_healthy_async(lambda: self.healthy(1.0), PROCESS_START)

    async def healthy(self, timeout: float) -> bool:
        try:
            response = await AsyncHTTPClient().fetch(f"{self.url}/healthz", request_timeout=timeout)
        except (OSError, HTTPClientError, asyncio.TimeoutError):
            return False
        return response.code == 200

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        code = self.runner.stop()
        assert code is not None, "server.py was not started"
        return code


def _never_started() -> subprocess.Popen[bytes]:
    raise AssertionError("server.py was not started")


StartRaw = Callable[..., Awaitable[RawProcess]]  # conftest's start_raw: (stdout, *args, nofile=N)


class ApiProcesses:
    """The ``server.py`` processes a test starts with the API on (each on a free API port); ``kill_all`` after it."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.processes: list[ServerProcess] = []

    async def start(self, args: Sequence[str], extra: Sequence[str], name: str) -> tuple[ServerProcess, int]:
        """``server.py <args> --api-port P <extra>``, logging to ``<name>.log``, once healthy; (it, P)."""
        api_port = free_port()
        argv = [*args, "--api-port", str(api_port), *extra]
        process = ServerProcess(argv, self.directory / f"{name}.log", env=self.env)
        self.processes.append(process)
        await process.start()
        return process, api_port

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


@contextlib.contextmanager
def launcher(
    port: int, *args: str, checkout: Path = ROOT, stderr: int = subprocess.STDOUT
) -> Iterator[subprocess.Popen[str]]:
    """``server.py cluster --port P <args>``, the launcher under test: its stdout a text pipe the
    test reads line by line (stderr into it unless given), killed at the end if still running."""
    argv = [sys.executable, str(checkout / "server.py"), "cluster", "--port", str(port), *args]
    process = subprocess.Popen(argv, cwd=checkout, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
