"""One way to run a child process, shared by the launcher, the local Redis Cluster and the tests.

A ``Process`` starts a command with its output in a log file, waits until a
health check passes (failing with the log's tail when the process exits
first or the deadline passes), and stops it with a signal, then SIGKILL once
a deadline has passed. ``free_port`` picks the loopback ports they listen on.
Every wait here has a deadline; polls sleep only between checks.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_EVERY = 0.05


class ProcessError(RuntimeError):
    """A process did not start, or did not become healthy; the message says which and why."""


class ProcessExited(ProcessError):
    """The process exited before its health check passed."""


def free_port(host: str = "127.0.0.1", also_free_at: int = 0) -> int:
    """A TCP port free on ``host`` right now (the caller binds it soon after).

    With ``also_free_at``, port + also_free_at is free too (a Redis Cluster
    node's bus port is its port + 10000). Ports are drawn below the kernel's
    ephemeral range where it leaves room: a port inside it can be taken by
    some outgoing connection between this check and the bind (CI once lost a
    cluster test to exactly that, on a bus port).
    """
    low, high = _pair_range(also_free_at)
    for _ in range(200):
        port = random.randint(low, high)
        try:
            for candidate in {port, port + also_free_at}:
                with socket.socket() as sock:
                    sock.bind((host, candidate))
        except OSError:
            continue
        return port
    raise ProcessError(f"no free pair of ports {also_free_at} apart")


def _pair_range(apart: int) -> tuple[int, int]:
    """Where to draw a port whose partner ``apart`` above it also sits outside the ephemeral range."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = ephemeral_low - apart - 1
    if high - 10000 >= 1000:
        return 10000, high
    return 20000, 65535 - apart


def wait_until(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``check`` until it holds; ProcessError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ProcessError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(POLL_EVERY)  # polling, bounded by the deadline


async def wait_until_async(check: Callable[[], Awaitable[bool]], what: str, timeout: float = START_TIMEOUT) -> None:
    """``wait_until`` for a coroutine check, leaving the event loop free between polls."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise ProcessError(f"{what} did not come up within {timeout:.0f} s")
        await asyncio.sleep(POLL_EVERY)  # polling, bounded by the deadline


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def http_ok_async(url: str) -> bool:
    """``http_ok`` on the event loop (a test's server may share it)."""
    try:
        response = await AsyncHTTPClient().fetch(url, raise_error=False, request_timeout=1.0)
    # raise_error=False still raises for no answer: a closed stream or a
    # timeout come as HTTPClientError (code 599), which is not an OSError.
    except (OSError, asyncio.TimeoutError, HTTPClientError):
        return False
    return response.code == 200


@dataclass
class Process:
    """One child process: start it, wait for its health, stop it with a deadline, read its log.

    ``log_path`` takes stdout (and stderr, unless ``stderr_path`` is given);
    ``own_log`` names a log the program writes itself (redis-server's
    ``--logfile``), read by ``log_tail`` instead. ``own_group`` starts it in a
    process group of its own, so that a stop reaches its children too.
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path = ROOT
    log_path: Path | None = None
    stderr_path: Path | None = None
    own_log: Path | None = None
    own_group: bool = False
    run_as: tuple[int, int] | None = None  # (uid, gid), when started as root
    stdout: IO[Any] | int | None = None  # instead of log_path: where the test wants stdout
    stderr: int | None = None  # instead of stderr_path: a descriptor (a terminal's, in a test)
    preexec: Callable[[], None] | None = None  # in the child before exec (resource limits)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> "Process":
        """Spawn it; returns at once (see ``wait_healthy``)."""
        options: dict[str, Any] = {}
        if self.run_as is not None:
            # Numbers, not names, and no supplementary groups: root's groups must not follow the child.
            options = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        out = self.log_path.open("ab") if self.log_path is not None and self.stdout is None else None
        err = self.stderr_path.open("ab") if self.stderr_path is not None else None
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self.stdout if self.stdout is not None else (out or subprocess.DEVNULL),
                stderr=self.stderr if self.stderr is not None else (err or subprocess.STDOUT),
                start_new_session=self.own_group,
                preexec_fn=self.preexec,
                **options,
            )
        finally:
            for handle in (out, err):
                if handle is not None:
                    handle.close()
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ProcessError(f"{self.name} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _failed(self, what: str) -> ProcessError:
        error = ProcessError if self.running else ProcessExited
        return error(f"{self.name} {what}: {self.log_tail()}")

    def wait_healthy(self, check: Callable[[], bool], timeout: float = START_TIMEOUT) -> "Process":
        """Until ``check`` passes; ProcessExited if it exits first, ProcessError (and killed) at the deadline."""
        try:
            wait_until(lambda: check() or not self.running, self.name, timeout)
        except ProcessError:
            self.kill()
            raise self._failed(f"not healthy within {timeout:.0f} s") from None
        if not self.running:
            raise self._failed("exited at start")
        return self

    async def wait_healthy_async(self, check: Callable[[], Awaitable[bool]], timeout: float = START_TIMEOUT) -> None:
        """``wait_healthy`` with a coroutine check."""

        async def done() -> bool:
            return not self.running or await check()

        try:
            await wait_until_async(done, self.name, timeout)
        except ProcessError:
            self.kill()
            raise self._failed(f"not healthy within {timeout:.0f} s") from None
        if not self.running:
            raise self._failed("exited at start")

    def send(self, signum: int) -> None:
        """Send ``signum`` to the process (to its group, with ``own_group``) if it still runs."""
        if not self.running or self.process is None:
            return
        if self.own_group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """``signum``, wait, and SIGKILL what is still there after ``timeout``; the exit code."""
        if self.process is None:
            return None
        if self.running:
            self.send(signal.SIGCONT)  # a paused process could not act on the signal
            self.send(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL, as in a crash; returns once the process is gone."""
        return self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: it keeps its connections open but does nothing (a hung process)."""
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log (``own_log``, else stdout's), then of its stderr file."""
        text: list[str] = []
        for path in (self.own_log or self.log_path, self.stderr_path):
            if path is not None and path.exists():
                text += path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


class RunsOneProcess:
    """For a class that owns one ``Process`` in ``self.runner``: its controls, delegated (no-ops before a start)."""

    runner: Process | None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.runner is None else self.runner.process

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    def kill(self) -> None:
        """SIGKILL, as in a crash; returns once the process is gone."""
        if self.runner is not None:
            self.runner.kill()

    def pause(self) -> None:
        """SIGSTOP: it holds its connections but answers nothing (a hung process)."""
        if self.runner is not None:
            self.runner.pause()

    def resume(self) -> None:
        if self.runner is not None:
            self.runner.resume()

    def log_tail(self, lines: int = 20) -> str:
        return "" if self.runner is None else self.runner.log_tail(lines)
