"""The chart of issue 9: delivered msgs/s and p99 against offered load in ``rooms``, one line per server.

    .venv/bin/python bench/chart.py bench/results/run-X.jsonl [--out bench/results/run-X-rooms.png]

From bench/run.py's JSON lines (or compare.py's): every step of every ``rooms``
run, the median over the rounds at each per-sender rate (x = offered
deliveries/s = rate x senders x members). Failed steps (p99 over the limit, a
loss, a failed connect) are drawn with an x. Servers: naive, channels, memory,
redis, then cluster and nginx2 when the file has them. matplotlib (Agg, no
display), from requirements-bench.txt.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the benchmark machine
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["naive", "channels", "memory", "redis", "cluster", "nginx2"]
STYLE = {
    "naive": ("tab:gray", "o"),
    "channels": ("tab:purple", "v"),
    "memory": ("tab:blue", "s"),
    "redis": ("tab:red", "D"),
    "cluster": ("tab:orange", "^"),
    "nginx2": ("tab:green", "P"),
}


def load(paths: list[Path], scenario: str) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                run = json.loads(line)
                if run.get("scenario") == scenario and "steps" in run:
                    runs[run["name"]].append(run)
    return runs


def curve(runs: list[dict[str, Any]]) -> list[tuple[float, float, float | None, bool]]:
    """(offered deliveries/s, delivered/s, p99 ms, all passed) per rate: medians over the runs that ran it."""
    by_rate: dict[float, list[dict[str, Any]]] = defaultdict(list)
    members = runs[0]["params"]["clients"]
    for run in runs:
        for step in run["steps"]:
            by_rate[step["rate_per_sender"]].append(step)
    points = []
    for _, steps in sorted(by_rate.items()):
        offered = statistics.median(s["offered_msgs_per_s"] for s in steps) * members
        delivered = statistics.median(s["delivered_msgs_per_s"] for s in steps)
        p99s = [s["latency_ms"]["p99"] for s in steps if s["latency_ms"]["p99"] is not None]
        points.append((offered, delivered, statistics.median(p99s) if p99s else None, all(s["ok"] for s in steps)))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="PNG (default: the first file's name + -rooms.png)")
    parser.add_argument("--scenario", default="rooms", help="a step scenario (default rooms)")
    args = parser.parse_args()
    runs = load(args.files, args.scenario)
    names = [n for n in ORDER if n in runs] + sorted(n for n in runs if n not in ORDER)
    if not names:
        raise SystemExit(f"no {args.scenario} runs in {', '.join(map(str, args.files))}")
    rounds = max(len(runs[n]) for n in names)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 9), sharex=True)
    for name in names:
        color, marker = STYLE.get(name, ("black", "."))
        points = curve(runs[name])
        xs = [p[0] for p in points]
        top.plot(xs, [p[1] for p in points], color=color, marker=marker, label=name)
        bottom.plot([p[0] for p in points if p[2]], [p[2] for p in points if p[2]], color=color, marker=marker)
        for offered, delivered, p99, ok in points:
            if not ok:  # a failed step: an x over its point
                top.plot([offered], [delivered], "x", color="black", markersize=9)
                if p99:
                    bottom.plot([offered], [p99], "x", color="black", markersize=9)
    low = min(p[0] for n in names for p in curve(runs[n]))
    high = max(p[0] for n in names for p in curve(runs[n]))
    top.plot([low, high], [low, high], ":", color="lightgray", label="delivered = offered")
    top.set_yscale("log")
    top.set_ylabel("delivered msgs/s (log)")
    top.set_title(
        f"{args.scenario}: 20 rooms x 10 clients, 1 sender each, 100-byte messages\n"
        f"median over {rounds} round{'s' if rounds > 1 else ''} per step; x = a failed step"
    )
    top.legend(loc="upper left")
    top.grid(True, alpha=0.3)
    bottom.axhline(100, color="lightgray", linestyle="--", label="p99 limit (100 ms)")
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms (log)")
    bottom.set_xlabel("offered deliveries/s (rate per sender x 20 senders x 10 members)")
    bottom.set_xscale("log")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.legend(loc="upper left")
    fig.tight_layout()
    out = args.out or args.files[0].with_name(args.files[0].stem + f"-{args.scenario}.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
