#!/usr/bin/env python3
"""Medians over the rounds of one session, ratios to a baseline measured in it, and the issue's goals.

    python3 bench/summarize.py bench/results/run-X.jsonl [--baseline naive] [--at 40] [--goals-only]

First the goals of issue 9 as one table (``goals.py``: each figure per server,
and pass/fail of the Redis server against its goal), then the detailed tables.

compare.py writes one JSON line per (server, scenario) run; a session of N
rounds has N lines per pair.  table.py prints every line; this prints, per
scenario and server, the median over the rounds of:

- rooms / broadcast: delivered msgs/s at the best passing step (and its rate
  per sender, p50, p99), plus the server's CPU cost per delivered frame at one
  fixed step (--at, default 20 msgs/s per sender: 4,000 deliveries/s in both
  scenarios), in microseconds of CPU per delivery = server CPU % of one core
  x 10,000 / delivered per second.  The pass/fail edge moves a lot on a shared
  2-core box; CPU per delivery at a fixed load moves much less.
- latency: p50, p99, p99.9 and server CPU %.
- conns: connected, KiB per connection.
- manyrooms, roomsheld, idle10k, held: see ``goals.py``.

Ratios are this server's median / the baseline's median from the same file(s).
Runs that errored, and step runs without a passing step, are listed but count
as 0 delivered msgs/s.
"""

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from goals import goals_table, own_tables  # noqa: E402  (bench/ is not a package)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def ratio(v, base):
    if v is None or not base:
        return "-"
    return f"{v / base:.2f}"


def step_at(run, rate):
    for s in run.get("steps", []):
        if s["rate_per_sender"] == rate:
            return s
    return None


def us_per_delivery(step):
    if not step or not step["ok"] or not step["server_cpu_pct"] or not step["delivered_msgs_per_s"]:
        return None
    return step["server_cpu_pct"] * 10_000 / step["delivered_msgs_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--baseline", help="default: naive if the file has it, else tornado_minimal (older sessions)")
    ap.add_argument(
        "--at", type=float, default=40, help="fixed step (msgs/s per sender) for CPU per delivery (default 40: 8,000/s)"
    )
    ap.add_argument("--goals-only", action="store_true", help="only the goals table")
    ap.add_argument(
        "--steps",
        help="comma-separated rates: print server CPU per step (median over the runs "
        "in which that step ran and passed) instead of the usual tables",
    )
    args = ap.parse_args()
    runs = defaultdict(list)  # (scenario, name) -> [run, ...] in file order
    order = []
    for path in args.files:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            key = (r["scenario"], r["name"])
            if r["name"] not in order:
                order.append(r["name"])
            runs[key].append(r)
    if args.baseline is None:
        args.baseline = "naive" if "naive" in order else "tornado_minimal"
    at = int(args.at) if args.at == int(args.at) else args.at
    print(goals_table(runs, order, args.baseline))
    if args.goals_only:
        return
    print(own_tables(runs, order))
    if args.steps:
        cpu_table(runs, order, [float(x) for x in args.steps.split(",")], args.baseline)
        return

    for scen in ("rooms", "broadcast"):
        names = [n for n in order if (scen, n) in runs]
        if not names:
            continue
        summary = {}
        for n in names:
            rs = runs[(scen, n)]
            best = [r.get("best") for r in rs]
            delivered = [b["delivered_msgs_per_s"] if b else 0 for b in best]
            fixed = [step_at(r, at) for r in rs]
            summary[n] = dict(
                rounds=len(rs),
                per_round=", ".join(
                    "error"
                    if "error" in r
                    else (
                        f"{fmt(b['delivered_msgs_per_s'], 0)} @{b['rate_per_sender']}"
                        if b
                        else f"none (fail @{r['first_failed_rate']})"
                    )
                    for r, b in zip(rs, best)
                ),
                delivered=med(delivered),
                p50=med([b["latency_ms"]["p50"] for b in best if b]),
                p99=med([b["latency_ms"]["p99"] for b in best if b]),
                us=med([us_per_delivery(s) for s in fixed]),
                us_n=sum(us_per_delivery(s) is not None for s in fixed),
                cpu_at=med([s["server_cpu_pct"] for s in fixed if s and s["ok"]]),
                p99_at=med([s["latency_ms"]["p99"] for s in fixed if s and s["ok"]]),
                lg_at=med([s["loadgen_cpu_pct"] for s in fixed if s and s["ok"]]),
                redis_at=med([s["redis_cpu_pct"] for s in fixed if s and s["ok"]]),
            )
        base = summary.get(args.baseline, {})
        print(f"\n### {scen}: medians over rounds\n")
        print(
            f"| server | rounds | best step per round (delivered msgs/s @ rate/sender) | median delivered msgs/s | "
            f"x {args.baseline} | median p50 / p99 ms at best | CPU µs per delivery at {at}/sender (n) | "
            f"x {args.baseline} | at {at}/sender: server / redis / loadgen CPU %, p99 ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            s = summary[n]
            print(
                f"| {n} | {s['rounds']} | {s['per_round']} | {fmt(s['delivered'], 0)} | "
                f"{ratio(s['delivered'], base.get('delivered'))} | {fmt(s['p50'], 1)} / {fmt(s['p99'], 1)} | "
                f"{fmt(s['us'], 1)} ({s['us_n']}) | {ratio(s['us'], base.get('us'))} | "
                f"{fmt(s['cpu_at'])} / {fmt(s['redis_at'])} / {fmt(s['lg_at'])}, {fmt(s['p99_at'])} |"
            )

    names = [n for n in order if ("latency", n) in runs]
    if names:
        summary = {}
        for n in names:
            rs = [r["result"] for r in runs[("latency", n)] if "result" in r]
            summary[n] = dict(
                rounds=len(runs[("latency", n)]),
                ok=len(rs),
                p50=med([r["latency_ms"]["p50"] for r in rs]),
                p99=med([r["latency_ms"]["p99"] for r in rs]),
                p999=med([r["latency_ms"]["p999"] for r in rs]),
                cpu=med([r["server_cpu_pct"] for r in rs]),
                p99s=", ".join(fmt(r["latency_ms"]["p99"], 1) for r in rs),
                lost=sum(r["lost"] for r in rs),
                closes=sum(r["unexpected_closes"] for r in rs),
            )
        base = summary.get(args.baseline, {})
        print("\n### latency (20 rooms x 10 clients, 2 msgs/s per sender): medians over rounds\n")
        print(
            f"| server | runs (ok) | median p50 ms | x {args.baseline} | median p99 ms | x {args.baseline} | "
            "p99 per round | median p99.9 ms | median server CPU % | lost / closes (sum) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n in names:
            s = summary[n]
            print(
                f"| {n} | {s['rounds']} ({s['ok']}) | {fmt(s['p50'], 2)} | {ratio(s['p50'], base.get('p50'))} | "
                f"{fmt(s['p99'], 2)} | {ratio(s['p99'], base.get('p99'))} | {s['p99s']} | {fmt(s['p999'], 2)} | "
                f"{fmt(s['cpu'])} | {s['lost']} / {s['closes']} |"
            )

    names = [n for n in order if ("conns", n) in runs]
    if names:
        summary = {}
        for n in names:
            rs = [r["result"] for r in runs[("conns", n)] if "result" in r]
            summary[n] = dict(
                rounds=len(runs[("conns", n)]),
                connected=", ".join(f"{r['connected']}/{r['requested']}" for r in rs),
                kib=med([r["rss_per_conn_kib"] for r in rs]),
                kibs=", ".join(fmt(r["rss_per_conn_kib"]) for r in rs),
                before=med([r["rss_before_kib"] / 1024 for r in rs]),
                closes=sum(r["unexpected_closes"] for r in rs),
                connect_p50=med([r["connect_ms"]["p50"] for r in rs]),
            )
        base = summary.get(args.baseline, {})
        print("\n### conns (2,000 idle connections): medians over rounds\n")
        print(
            f"| server | rounds | connected per round | median KiB/conn | x {args.baseline} | KiB/conn per round | "
            "median RSS before MiB | median connect p50 ms | unexpected closes (sum) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            s = summary[n]
            print(
                f"| {n} | {s['rounds']} | {s['connected']} | {fmt(s['kib'])} | {ratio(s['kib'], base.get('kib'))} | "
                f"{s['kibs']} | {fmt(s['before'])} | {fmt(s['connect_p50'], 0)} | {s['closes']} |"
            )


def cpu_table(runs, order, rates, baseline):
    """Server CPU at fixed steps: median % of one core, µs per delivery, p99, over the runs that passed it."""
    for scen in ("rooms", "broadcast"):
        names = [n for n in order if (scen, n) in runs]
        if not names:
            continue
        cells = {}
        for n in names:
            for rate in rates:
                steps = [
                    s
                    for r in runs[(scen, n)]
                    for s in r.get("steps", [])
                    if s["rate_per_sender"] == rate and not s.get("refinement")
                ]
                ok = [s for s in steps if s["ok"]]
                cells[(n, rate)] = dict(
                    ran=len(steps),
                    ok=len(ok),
                    cpu=med([s["server_cpu_pct"] for s in ok]),
                    us=med([us_per_delivery(s) for s in ok]),
                    p99=med([s["latency_ms"]["p99"] for s in ok]),
                    all_cpu="/".join(fmt(s["server_cpu_pct"]) for s in steps),
                )
        print(f"\n### {scen}: server CPU at fixed steps (median over the runs that passed the step)\n")
        columns = f"CPU % (each run) / µs per delivery / x {baseline} / p99 ms / passed"
        head = " | ".join(f"{fmt(r, 0) if r == int(r) else r}/sender: {columns}" for r in rates)
        print(f"| server | {head} |")
        print("|---|" + "---|" * len(rates))
        for n in names:
            row = []
            for rate in rates:
                c, b = cells[(n, rate)], cells.get((baseline, rate), {})
                row.append(
                    f"{fmt(c['cpu'])} ({c['all_cpu']}) / {fmt(c['us'])} / {ratio(c['us'], b.get('us'))} / "
                    f"{fmt(c['p99'])} / {c['ok']} of {c['ran']}"
                )
            print(f"| {n} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
