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
import time
from pathlib import Path
from typing import Any, Sequence

from tornado.httpclient import AsyncHTTPClient

from tests.helpers import free_port
from tests.services import ServiceError

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class ServerProcess:
    """``python server.py --port P <args>``; ``restart`` keeps the port and the arguments."""

    def __init__(
        self, args: Sequence[str], log_path: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.env = dict(env or {})  # CHAT_* settings that belong in the environment (secrets)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

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
        with self.log_path.open("ab") as log, self.stderr_path.open("ab") as errors:
            # Popen returns as soon as the child is forked; the wait that follows is async.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, str(ROOT / "server.py"), "--port", str(self.port), *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=errors,
            )
        await self._wait_healthy(timeout)
        return self

    async def _wait_healthy(self, timeout: float) -> None:
        client = AsyncHTTPClient()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServiceError(f"server.py exited early: {self.log_tail()}")
            try:
                response = await client.fetch(f"{self.url}/healthz", raise_error=False, request_timeout=1.0)
                if response.code == 200:
                    return
            except OSError:
                pass  # not listening yet
            await asyncio.sleep(0.05)  # polling the port, bounded by the deadline
        self.kill()
        raise ServiceError(f"server.py not healthy on port {self.port} within {timeout}s: {self.log_tail()}")

    async def restart(self) -> "ServerProcess":
        await self.stop()
        return await self.start()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait for the exit; SIGKILL after ``timeout``. Returns the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # waiting for the exit, bounded by the deadline
        if process.poll() is None:
            process.kill()
            process.wait(timeout)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL, as in a crash; returns once the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but does nothing."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

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
