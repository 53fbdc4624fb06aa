"""bench/storm.py's figures: each member's record tallied against its room's acknowledged messages, and the tables."""

from __future__ import annotations

import statistics
from typing import Any


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")


def tally(records: list[dict[str, Any]], killed_at: float) -> dict[str, Any]:
    """Resume times, and each member's losses and doubles against every acknowledged message of its room."""
    acked: dict[str, set[str]] = {}
    for r in records:
        acked.setdefault(r["room"], set()).update(r["acked"])
    resume, lost, doubled, lossy, refused = [], 0, 0, 0, {}
    phases: dict[str, list[float]] = {"backoff": [], "tcp": [], "handshake": [], "to_ready": []}
    for r in records:
        start = r.get("start")
        got = r["ids"]
        missing = [m for m in acked[r["room"]] if m not in got and (start is None or key(m) > key(start))]
        lost += len(missing)
        lossy += bool(missing)
        doubled += sum(n - 1 for n in got.values())
        cut = [t for t in r["closes"] if t >= killed_at]
        if cut:
            back = [t for t in r["readies"] if t > cut[0]]
            resume.append(back[0] - killed_at if back else float("inf"))
            tries = [a for a in r["attempts"] if a[0] > cut[0]]
            if tries and back:  # the first reconnect attempt's phases
                began, connected, answered = tries[0]
                for name, value in zip(
                    phases, (began - killed_at, connected - began, answered - connected, back[0] - answered)
                ):
                    phases[name].append(value)
        for status, n in r["refused"].items():
            refused[status] = refused.get(status, 0) + n
    return {
        "cut_off": len(resume),
        "resume_p50_s": pct(resume, 0.5),
        "resume_p99_s": pct(resume, 0.99),
        "resume_max_s": round(max(resume), 3) if resume else None,
        "acked": sum(len(v) for v in acked.values()),
        "lost": lost,
        "members_with_loss": lossy,
        "doubled": doubled,
        "unacked": sum(r["unacked"] for r in records),
        "refused": refused,
        "first_try_p50_s": {name: pct(values, 0.5) for name, values in phases.items()},
        "refused_first_joins": sum(sum(r["refused_initial"].values()) for r in records),
    }


def key(message_id: str) -> tuple[int, int]:
    ms, seq = message_id.split("-")
    return int(ms), int(seq)


def summary(results: list[dict[str, Any]]) -> None:
    """Every run, then per member count and checkout the medians over rounds."""
    head = "clients  checkout  cut off  resume p50/p99/max s  lost  doubled  survivor CPU s/%  RSS MiB before/peak"
    head += "  Redis CPU %"
    print("\n" + head + "  refused")
    for r in results:
        print(row(r) + f"  {r['refused']}")
    print("\nmedians over rounds\n" + head + "  refused (sum)  rounds")
    for clients in sorted({r["clients"] for r in results}):
        for label in dict.fromkeys(r["label"] for r in results):
            rows = [r for r in results if r["clients"] == clients and r["label"] == label]
            if rows:
                median = {k: statistics.median(r[k] for r in rows) for k in NUMBERS}
                refused: dict[str, int] = {}
                for r in rows:
                    for status, n in r["refused"].items():
                        refused[status] = refused.get(status, 0) + n
                print(row({**median, "clients": clients, "label": label}) + f"  {refused}  {len(rows)}")


NUMBERS = [
    "cut_off",
    "resume_p50_s",
    "resume_p99_s",
    "resume_max_s",
    "lost",
    "doubled",
    "survivor_cpu_pct",
    "survivor_cpu_s",
]
NUMBERS += ["survivor_rss_mib_before", "survivor_rss_mib_peak", "redis_cpu_pct"]


def row(r: dict[str, Any]) -> str:
    return (
        f"{r['clients']:7}  {r['label']:8}  {r['cut_off']:7.0f}  {r['resume_p50_s']:.2f}/{r['resume_p99_s']:.2f}/"
        f"{r['resume_max_s']:.2f}      {r['lost']:4.0f}  {r['doubled']:7.0f}"
        f"  {r['survivor_cpu_s']:9.2f}/{r['survivor_cpu_pct']:<6.1f}"
        f"  {r['survivor_rss_mib_before']:9.0f}/{r['survivor_rss_mib_peak']:<9.0f}  {r['redis_cpu_pct']:11.1f}"
    )
