"""The shared harness's compare.py with two scenarios of ours added: ``idle10k`` and ``held``.

    .venv/bin/python bench/compare_plus.py [compare.py's flags]   # from the project root

Loads ``compare.py`` from the shared harness (``$SHARED``, default ../shared/bench,
or ``--shared DIR`` as the first flag), adds the scenarios below to its table and
runs its ``main()``: the server start and stop, the warm-up, the /proc sampling,
the JSON line per scenario are compare.py's own, so our scenarios are measured
exactly as its are.

- ``idle10k``: compare.py's ``conns`` with 10,000 idle connections over 20 rooms
  held 10 s by one loadgen: KiB per connection = (median RSS while all are open -
  RSS after the warm-up) / connected. The server needs ``--max-connections`` above
  10,000 (ours defaults to 10,000).
- ``held``: one server holding 100, then 1,000, then 10,000 rooms (one idle
  connection each, held by background loadgens). At each level, 200 probe joins
  into fresh rooms, one at a time; join time = WebSocket handshake start until the
  server's first frame (``ready`` in a fresh room). ``/readyz`` is polled every
  100 ms throughout; every poll that is not a 200 within 1 s is counted.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parent.parent
# $HELD_LEVELS, $HELD_PROBES, $IDLE10K_CONNECTIONS shrink the scenario for a quick try (bench/run.py --quick).
HELD_LEVELS = tuple(int(x) for x in os.environ.get("HELD_LEVELS", "100,1000,10000").split(","))
PROBES = int(os.environ.get("HELD_PROBES", "200"))
IDLE_CONNECTIONS = int(os.environ.get("IDLE10K_CONNECTIONS", "10000"))
PROBE_TIMEOUT = 5.0  # s for one join, handshake included
CONNECT_TIMEOUT = 180.0  # s for a background loadgen to open its connections
READYZ_PERIOD = 0.1
READYZ_TIMEOUT = 1.0


def load_compare(shared: Path) -> ModuleType:
    """compare.py as a module (it is a script in another tree, not a package)."""
    spec = importlib.util.spec_from_file_location("compare", shared / "compare.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no compare.py in {shared}: set SHARED or --shared to the shared harness")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max as compare.py's loadgen reports them (nearest rank), in ms."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 2)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1], 2)}


class ReadyzPoller:
    """Polls /readyz every READYZ_PERIOD s; counts polls and the ones that were not a 200 in time."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.polls = 0
        self.not_ok = 0
        self.kinds: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def snapshot(self) -> tuple[int, int]:
        return self.polls, self.not_ok

    async def _run(self) -> None:
        client = AsyncHTTPClient()
        while True:
            started = time.monotonic()
            kind = "200"
            try:
                response = await client.fetch(
                    HTTPRequest(self.url, connect_timeout=READYZ_TIMEOUT, request_timeout=READYZ_TIMEOUT),
                    raise_error=False,
                )
                kind = str(response.code)
            except (OSError, HTTPClientError, asyncio.TimeoutError) as exc:
                kind = type(exc).__name__
            self.polls += 1
            if kind != "200":
                self.not_ok += 1
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
            # Keep the period, not the gap: a slow answer does not thin the polls out.
            await asyncio.sleep(max(0.0, READYZ_PERIOD - (time.monotonic() - started)))


async def hold_connections(args: Any, loadgen_path: Path, count: int, prefix: str) -> asyncio.subprocess.Process:
    """A background loadgen holding ``count`` idle connections, one room each; returns once they are open."""
    process = await asyncio.create_subprocess_exec(
        args.node,
        str(loadgen_path),
        "--url-template",
        args.url_template,
        "--connections-only",
        str(count),
        "--rooms",
        str(count),
        "--room-prefix",
        prefix,
        "--duration",
        "3600",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"background loadgen did not open {count} connections in {CONNECT_TIMEOUT:.0f} s")
        line = (await asyncio.wait_for(process.stderr.readline(), left)).decode(errors="replace")
        if not line:
            raise RuntimeError(f"background loadgen exited ({await process.wait()}) before holding its connections")
        found = re.search(r"connected (\d+)/(\d+)", line)
        if found:
            if int(found.group(1)) != count:
                raise RuntimeError(f"background loadgen: {line.strip()}")
            # Drain its stderr from here on so that it never blocks on a full pipe.
            asyncio.get_running_loop().create_task(_drain(process.stderr))
            return process


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except asyncio.TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def probe_join(url: str, origin: str) -> float:
    """ms from the start of the handshake until the server's first frame in a fresh room."""
    started = time.perf_counter()
    request = HTTPRequest(url, headers={"Origin": origin}, connect_timeout=PROBE_TIMEOUT, request_timeout=PROBE_TIMEOUT)
    conn = await asyncio.wait_for(websocket_connect(request), PROBE_TIMEOUT)
    try:
        left = PROBE_TIMEOUT - (time.perf_counter() - started)
        frame = await asyncio.wait_for(conn.read_message(), max(left, 0.001))
        if frame is None:
            raise ConnectionError(f"closed before the first frame: {conn.close_code} {conn.close_reason}")
        return (time.perf_counter() - started) * 1000
    finally:
        conn.close()


async def held(args: Any, compare: ModuleType, server_pid: int) -> dict[str, Any]:
    port = compare.ws_ports(args.url_template)[0]
    template = args.url_template.split(",")[0]
    origin = f"http://127.0.0.1:{port}"
    poller = ReadyzPoller(port)
    poller.start()
    holders: list[asyncio.subprocess.Process] = []
    levels = []
    holding = 0
    try:
        for level in HELD_LEVELS:
            polls0, bad0 = poller.snapshot()
            t0 = time.monotonic()
            holders.append(
                await hold_connections(args, compare.BENCH / "loadgen.mjs", level - holding, f"held{level}x")
            )
            holding = level
            connect_s = time.monotonic() - t0
            times: list[float] = []
            errors: dict[str, int] = {}
            for i in range(PROBES):
                url = template.replace("{room}", f"probe{level}x{i}")
                try:
                    times.append(await probe_join(url, origin))
                except Exception as exc:  # a failed join is a result, counted by kind
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            polls1, bad1 = poller.snapshot()
            entry = {
                "rooms_held": level,
                "hold_connect_s": round(connect_s, 1),
                "rss_kib": compare.proc_usage(server_pid)[0],
                "joins": len(times),
                "join_failed": sum(errors.values()),
                "join_errors": errors,
                "join_ms": percentiles(times),
                "readyz_polls": polls1 - polls0,
                "readyz_not_200": bad1 - bad0,
            }
            levels.append(entry)
            compare.log(
                f"  held {level}: join p50 {entry['join_ms']['p50']} p99 {entry['join_ms']['p99']} ms, "
                f"{entry['join_failed']} failed, readyz not 200 {entry['readyz_not_200']}/{entry['readyz_polls']}"
            )
    finally:
        await poller.stop()
        for process in holders:
            await stop_process(process)
    return {
        "result": {
            "levels": levels,
            "readyz_polls": poller.polls,
            "readyz_not_200": poller.not_ok,
            "readyz_kinds": poller.kinds,
        }
    }


def register(compare: ModuleType) -> None:
    compare.SCENARIOS["idle10k"] = dict(kind="conns", connections=IDLE_CONNECTIONS, rooms=20, hold=10)
    compare.SCENARIOS["held"] = dict(kind="held", levels=list(HELD_LEVELS), probes=PROBES)
    compare.RUNNERS["held"] = lambda args, sc, sampler, server: asyncio.run(held(args, compare, server.pid))


def main() -> None:
    argv = sys.argv[1:]
    shared = Path(os.environ.get("SHARED", ROOT.parent / "shared" / "bench"))
    if argv[:1] == ["--shared"]:
        shared, argv = Path(argv[1]), argv[2:]
    # 10,000 sockets in one server and one loadgen: both inherit this process's limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Stopped by SIGINT or SIGTERM (bench/run.py sends SIGINT), compare.py's finally blocks must run to stop
    # the server and the redis-server it started: both become a KeyboardInterrupt, even where the parent
    # left SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    compare = load_compare(shared.resolve())
    register(compare)
    sys.argv = [str(shared / "compare.py"), *argv]
    compare.main()


if __name__ == "__main__":
    main()
