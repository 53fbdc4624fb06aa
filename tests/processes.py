"""Real ``server.py`` processes for tests: start on a free port, wait for /healthz, stop or kill.

Each process writes its stdout (JSON lines, unbuffered) to a file of its own
and its stderr beside it (``.stderr``: structlog owns stdout, so anything
here is a line that escaped it); tests read them back with ``lines()``,
``events()`` and ``stderr()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from ops.process_runner import ROOT, Process, ProcessError, free_port, http_ok_async
from tests.services import ServiceError

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
__all__ = ["ROOT", "ServerProcess"]


class ServerProcess:
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

    def kill(self) -> None:
        """SIGKILL, as in a crash; returns once the process is gone."""
        if self.runner is not None:
            self.runner.kill()

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but does nothing."""
        if self.runner is not None:
            self.runner.pause()

    def resume(self) -> None:
        if self.runner is not None:
            self.runner.resume()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.runner is None else self.runner.process

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join((self.lines() + self.stderr().decode(errors="replace").splitlines())[-lines:])

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
