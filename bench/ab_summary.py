"""Medians over rounds of bench/ab.sh's runs: per run name, the figures of its scenario, and ratios to naive.

.venv/bin/python bench/ab_summary.py bench/results/ab-rooms40.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any


def figures(line: dict[str, Any]) -> dict[str, float | None]:
    if "best" in line or "steps" in line:  # a step scenario: its last step
        step = (line.get("steps") or [None])[-1] or {}
        cpu, delivered = step.get("server_cpu_pct"), step.get("delivered_msgs_per_s")
        return {
            "delivered/s": delivered,
            "cpu %": cpu,
            "cpu us/delivery": round(cpu / 100 / delivered * 1e6, 1) if cpu and delivered else None,
            "p50 ms": step.get("latency_ms", {}).get("p50"),
            "p99 ms": step.get("latency_ms", {}).get("p99"),
            "lost": step.get("lost"),
        }
    result = line.get("result", {})
    if "connect_ms" in result and "rss_per_conn_kib" in result:  # a conns scenario
        return {
            "connected": result.get("connected"),
            "connect p99 ms": result["connect_ms"].get("p99"),
            "KiB/conn": result.get("rss_per_conn_kib"),
        }
    return {
        "p50 ms": result.get("latency_ms", {}).get("p50"),
        "p99 ms": result.get("latency_ms", {}).get("p99"),
        "lost": result.get("lost"),
        "cpu %": result.get("server_cpu_pct"),
    }


def main() -> None:
    runs: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for raw in open(sys.argv[1]):
        if raw.strip():
            line = json.loads(raw)
            runs[line["name"]].append(figures(line))
    medians = {
        name: {k: statistics.median([r[k] for r in rows if r[k] is not None] or [float("nan")]) for k in rows[0]}
        for name, rows in runs.items()
    }
    keys = list(next(iter(medians.values())))
    print("| run | rounds | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    base = medians.get("naive", {})
    for name, row in medians.items():
        cells = []
        for k in keys:
            value, ref = row[k], base.get(k)
            ratio = f" ({value / ref:.2f}x)" if ref and name != "naive" and value == value and ref == ref else ""
            cells.append(f"{value:g}{ratio}")
        print(f"| {name} | {len(runs[name])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
