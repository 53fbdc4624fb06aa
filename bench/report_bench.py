"""Peak memory and time of ``server.py report`` on large logs (not a unit test: ~20 s).

    .venv/bin/python bench/report_bench.py [--lines 1000000] [--also 100000]

Writes synthetic logs in the server's own line format (ws.connect, http.request,
message.accepted/rejected, ws.disconnect, one session after another over a day,
a third of the sessions in one busy room so that its connection durations go
past the exact limit into the histogram), runs ``server.py report --format
json`` on each as a child process and reads that child's peak RSS from
``os.wait4``. Peak RSS that stays flat from the small log to the large one is
the point: memory does not grow with lines. Results: bench/RESULTS-report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
ROOMS = [f"room{n}" for n in range(50)]
USERS = [f"user{n}" for n in range(20_000)]
REASONS = ["bad_json", "bad_request", "message_too_long", "rate_limited"]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN_SECONDS = 24 * 3600


@dataclass
class Generated:
    lines: int = 0
    accepted: int = 0
    connections: int = 0


def _stamp(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _line(event: str, seconds: float, **fields: object) -> bytes:
    body = {**fields, "event": event, "level": "info", "timestamp": _stamp(seconds), "node": "bench-1"}
    return orjson.dumps(body) + b"\n"


def _session(rng: random.Random, seconds: float, conn: int) -> tuple[list[bytes], int]:
    """One connection's lines: handshake, connect, messages and rejects, disconnect."""
    room = "lobby" if rng.random() < 0.33 else rng.choice(ROOMS)
    who = {"conn": f"bench-1:{conn}", "room": room, "user": rng.choice(USERS)}
    lines = [
        _line(
            "http.request",
            seconds,
            method="GET",
            path=f"/ws/chat/{room}/",
            status=101,
            duration_ms=0.5,
            client="10.0.0.1",
        ),
        _line("ws.connect", seconds, client="10.0.0.1", since=None, **who),
    ]
    accepted = 0
    for n in range(rng.randint(0, 16)):
        if rng.random() < 0.05:
            lines.append(_line("message.rejected", seconds + n, reason=rng.choice(REASONS), **who))
        else:
            accepted += 1
            lines.append(_line("message.accepted", seconds + n, msg_id=f"{conn}-{n}", bytes=42, **who))
    duration_ms = int(rng.lognormvariate(10, 1.5))
    lines.append(
        _line(
            "ws.disconnect",
            seconds + duration_ms / 1000,
            code=rng.choice([1000, 1001, 1006]),
            reason=None,
            duration_ms=duration_ms,
            messages_in=accepted,
            messages_out=accepted * 3,
            **who,
        )
    )
    return lines, accepted


def generate(path: Path, target_lines: int, seed: int = 1) -> Generated:
    rng = random.Random(seed)
    made = Generated()
    with path.open("wb") as out:
        while made.lines < target_lines:
            seconds = SPAN_SECONDS * made.lines / target_lines
            lines, accepted = _session(rng, seconds, made.connections + 1)
            if rng.random() < 0.01:
                lines.append(b"this line is not JSON\n")
            out.writelines(lines)
            made.lines += len(lines)
            made.accepted += accepted
            made.connections += 1
    return made


def measure(path: Path) -> tuple[float, int, dict[str, Any]]:
    """Wall seconds, peak RSS (KiB) and parsed output of one report run in a child process."""
    command = [sys.executable, str(ROOT / "server.py"), "report", "--format", "json", str(path)]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as captured:
        child = subprocess.Popen(command, stdout=captured, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        captured.seek(0)
        report = json.loads(captured.read())
    if child.returncode != 0:
        raise SystemExit(f"report exited {child.returncode}")
    return elapsed, usage.ru_maxrss, report


def baseline_rss() -> int:
    """Peak RSS of the interpreter with the report's imports and nothing read, for comparison."""
    child = subprocess.Popen([sys.executable, "-c", "import ops.report, orjson, server"], cwd=ROOT)
    return os.wait4(child.pid, 0)[2].ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--also", type=int, default=100_000, help="a smaller log, to compare memory")
    args = parser.parse_args()
    print(f"baseline (imports only): peak RSS {baseline_rss() / 1024:.1f} MiB")
    print("| lines | file MiB | rooms | accepted | seconds | lines/s | peak RSS MiB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch:
        for target in (args.also, args.lines):
            path = Path(scratch) / f"traffic-{target}.log"
            made = generate(path, target)
            elapsed, peak_kib, report = measure(path)
            rooms = report["rooms"]
            counted = sum(room["accepted"] for room in rooms.values())
            if counted != made.accepted:
                raise SystemExit(f"report counted {counted} accepted, generator wrote {made.accepted}")
            lines = report["lines"]["read"]
            print(
                f"| {lines:,} | {path.stat().st_size / 2**20:.0f} | {len(rooms)} | {counted:,} | "
                f"{elapsed:.1f} | {lines / elapsed:,.0f} | {peak_kib / 1024:.1f} |"
            )
            path.unlink()


if __name__ == "__main__":
    main()
