"""The event loop's long callbacks: which ones hold the loop past a threshold, how often, how long.

Runs server.py (on Python's asyncio loop: uvloop's callbacks cannot be timed from Python) with every
callback timed; at exit prints, to stderr, the callbacks over ``STALL_MS`` (default 0.5) by what
they ran (a Task by its coroutine), with counts, total and worst; and the cycle collector's pauses
(those are timed on uvloop too; GC_THRESHOLDS=a,b,c tries other collector settings). From the
project root:

    STALL_MS=0.5 .venv/bin/python bench/experiments/loop_stalls.py --event-loop asyncio --port 8862 ...

then drive it (../shared/bench/loadgen.mjs) and stop it with SIGTERM. A latency tail at light load
is made of the few messages that arrived while one of these held the loop.
"""

from __future__ import annotations

import asyncio.events
import atexit
import collections
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

THRESHOLD = float(os.environ.get("STALL_MS", "0.5")) / 1000
counts: collections.Counter[str] = collections.Counter()
total: collections.Counter[str] = collections.Counter()
worst: dict[str, float] = {}
timed = [0, 0.0]  # callbacks run, seconds in them


def describe(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"Task {getattr(coro, '__qualname__', coro)}"
    return getattr(callback, "__qualname__", repr(callback))


original = asyncio.events.Handle._run


def timed_run(self: asyncio.events.Handle) -> None:
    callback = self._callback  # type: ignore[attr-defined]  # cleared if the handle is cancelled while it runs
    start = time.perf_counter()
    original(self)
    took = time.perf_counter() - start
    timed[0] += 1
    timed[1] += took
    if took > THRESHOLD:
        key = describe(callback)
        counts[key] += 1
        total[key] += took
        worst[key] = max(worst.get(key, 0.0), took)


asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

collections_run: dict[int, list[float]] = collections.defaultdict(list)  # generation -> pause seconds
_gc_start = [0.0]


def on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        collections_run[info["generation"]].append(time.perf_counter() - _gc_start[0])


gc.callbacks.append(on_gc)


@atexit.register
def report() -> None:
    print(f"callbacks {timed[0]}, {timed[1] * 1000:.0f} ms in them; over {THRESHOLD * 1000:.2f} ms:", file=sys.stderr)
    for generation, pauses in sorted(collections_run.items()):
        pauses.sort()
        print(
            f"gc gen{generation}: {len(pauses)} collections, median {pauses[len(pauses) // 2] * 1000:.2f} ms,"
            f" worst {pauses[-1] * 1000:.2f} ms",
            file=sys.stderr,
        )
    for key, n in counts.most_common(25):
        print(f"{n:6d}  total {total[key] * 1000:8.1f} ms  worst {worst[key] * 1000:6.2f} ms  {key}", file=sys.stderr)


if __name__ == "__main__":
    import runtime.process
    import server

    if thresholds := os.environ.get("GC_THRESHOLDS"):  # e.g. 2000,10,1000: try other collector settings
        runtime.process.GC_THRESHOLDS = tuple(int(n) for n in thresholds.split(","))  # type: ignore[assignment]

    sys.exit(server.main(sys.argv[1:]))
