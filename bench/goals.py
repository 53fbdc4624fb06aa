"""Issue 9's goals as one Markdown table, from the JSON lines of a session (used by summarize.py).

Every figure is the median over the session's rounds (runs that errored count
as missing; a step scenario without a passing step counts as 0 deliveries/s).
The goal is checked for the ``redis`` server (the issue's subject); the other
servers' figures stand beside it, ratios to the baseline (the naive server) of
the same file. "does not grow" for the held curve is read as: join p99 at the
largest level at most 2x the p99 at the smallest (and below 100 ms).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Iterable

Runs = dict[tuple[str, str], list[dict[str, Any]]]
SUBJECT = "redis"
CPU_RATE = 40  # msgs/s per sender in rooms: 20 senders x 40 x 10 members = 8,000 deliveries/s
SHOWN = ("naive", "channels", "memory", "redis", "cluster", "nginx2")


def med(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:  # deliveries/s, ms in the thousands: decimals are noise
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}" if isinstance(value, float) and not value.is_integer() else f"{value:,.0f}"


def results(runs: Runs, scenario: str, name: str) -> list[dict[str, Any]]:
    return [r for r in runs.get((scenario, name), []) if "error" not in r]


def best_delivered(runs: Runs, scenario: str, name: str) -> float | None:
    lines = results(runs, scenario, name)
    if not lines:
        return None
    return med([(r.get("best") or {}).get("delivered_msgs_per_s", 0) for r in lines])


def cpu_us_at(runs: Runs, name: str, rate: int = CPU_RATE) -> float | None:
    """Server CPU µs per delivery at one rooms step (cpu_pct/100/delivered*1e6), over the runs that ran it.

    A step that failed on p99 alone still counts: the CPU a load costs does not depend on whether the
    latency limit held (delivered/s is the divisor, so a backlog being caught up is accounted for).
    A step with a loss or a failed connect does not count.
    """
    values = []
    for r in results(runs, "rooms", name):
        for step in r.get("steps", []):
            clean = not step["lost"] and step["connected"] == step["clients"] and not step["errors"]
            measured = clean and step["server_cpu_pct"] and step["delivered_msgs_per_s"]
            if step["rate_per_sender"] == rate and measured:
                values.append(step["server_cpu_pct"] / 100 / step["delivered_msgs_per_s"] * 1e6)
    return med(values)


def fixed(runs: Runs, scenario: str, name: str, pick: Callable[[dict[str, Any]], float | None]) -> float | None:
    return med([pick(r["result"]) for r in results(runs, scenario, name) if "result" in r])


def total(runs: Runs, scenario: str, name: str, pick: Callable[[dict[str, Any]], float]) -> float | None:
    lines = [r["result"] for r in results(runs, scenario, name) if "result" in r]
    return sum(pick(r) for r in lines) if lines else None


def held_p99(runs: Runs, name: str) -> dict[int, float | None]:
    """Median join p99 per level of rooms held."""
    per_level: dict[int, list[float | None]] = {}
    for r in results(runs, "held", name):
        for level in r.get("result", {}).get("levels", []):
            per_level.setdefault(level["rooms_held"], []).append(level["join_ms"]["p99"])
    return {level: med(values) for level, values in sorted(per_level.items())}


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**pass**" if ok else "**FAIL**")


def goals_table(runs: Runs, order: list[str], baseline: str) -> str:
    names = [n for n in SHOWN if n in order] + [n for n in order if n not in SHOWN]
    rows: list[tuple[str, dict[str, str], str, bool | None]] = []

    def ratio_row(label: str, values: dict[str, float | None], goal: str, check: Callable[[float], bool]) -> None:
        base = values.get(baseline)
        cells = {}
        for n, v in values.items():
            cells[n] = fmt(v) + (f" ({v / base:.2f}x)" if v is not None and base and n != baseline else "")
        subject, ok = values.get(SUBJECT), None
        if subject is not None and base:
            ok = check(subject / base)
        rows.append((label, cells, goal, ok))

    def plain_row(label: str, values: dict[str, Any], goal: str, ok: bool | None) -> None:
        rows.append((label, {n: v if isinstance(v, str) else fmt(v) for n, v in values.items()}, goal, ok))

    ratio_row(
        "rooms 20x10: deliveries/s at the best step",
        {n: best_delivered(runs, "rooms", n) for n in names},
        f"redis >= {baseline}",
        lambda r: r >= 1.0,
    )
    ratio_row(
        f"rooms: server CPU µs per delivery at {CPU_RATE}/sender (8,000/s; the step counts if nothing was lost)",
        {n: cpu_us_at(runs, n) for n in names},
        f"redis <= 1.0x {baseline} (stretch 0.6x)",
        lambda r: r <= 1.0,
    )
    p99 = {n: fixed(runs, "latency", n, lambda r: r["latency_ms"]["p99"]) for n in names}
    lost = {n: total(runs, "latency", n, lambda r: r["lost"]) for n in names}
    plain_row(
        "latency at 400 deliveries/s: p99 ms (lost)",
        {n: f"{fmt(p99[n], 2)} ({fmt(lost[n])})" for n in names},
        "redis p99 <= 3 ms",
        None if p99.get(SUBJECT) is None else p99[SUBJECT] <= 3.0 and not lost[SUBJECT],  # type: ignore[operator]
    )
    ratio_row(
        "broadcast 1x200: deliveries/s at the best step",
        {n: best_delivered(runs, "broadcast", n) for n in names},
        f"redis >= 1.3x {baseline}",
        lambda r: r >= 1.3,
    )
    for scenario, label in (("conns", "conns (2,000 idle)"), ("idle10k", "idle10k (10,000 idle, one process)")):
        kib = {n: fixed(runs, scenario, n, lambda r: r["rss_per_conn_kib"]) for n in names}
        short = {n: total(runs, scenario, n, lambda r: r["requested"] - r["connected"]) for n in names}
        ok = None
        if kib.get(SUBJECT) is not None:
            ok = kib[SUBJECT] <= 16.0 and not short[SUBJECT]  # type: ignore[operator]
        plain_row(
            f"{label}: KiB per connection (not connected)",
            {n: f"{fmt(kib[n])} ({fmt(short[n])})" if kib[n] is not None else "-" for n in names},
            "redis <= 16 KiB, all connected",
            ok,
        )
    many_p99 = {n: fixed(runs, "manyrooms", n, lambda r: r["latency_ms"]["p99"]) for n in names}
    many_lost = {n: total(runs, "manyrooms", n, lambda r: r["lost"]) for n in names}
    plain_row(
        "manyrooms 2,000x2: p99 ms (lost)",
        {n: f"{fmt(many_p99[n], 2)} ({fmt(many_lost[n])})" if many_p99[n] is not None else "-" for n in names},
        "redis p99 <= 10 ms, lost 0",
        None if many_p99.get(SUBJECT) is None else many_p99[SUBJECT] <= 10.0 and not many_lost[SUBJECT],  # type: ignore[operator]
    )
    held_cp99 = {n: fixed(runs, "roomsheld", n, lambda r: r["connect_ms"]["p99"]) for n in names}
    held_short = {n: total(runs, "roomsheld", n, lambda r: r["requested"] - r["connected"]) for n in names}
    plain_row(
        "roomsheld 3,000 rooms: connect p99 ms (not connected)",
        {n: f"{fmt(held_cp99[n])} ({fmt(held_short[n])})" if held_cp99[n] is not None else "-" for n in names},
        "redis all connected, p99 <= 200 ms",
        None if held_cp99.get(SUBJECT) is None else held_cp99[SUBJECT] <= 200 and not held_short[SUBJECT],  # type: ignore[operator]
    )
    curves = {n: held_p99(runs, n) for n in names}
    readyz = {n: total(runs, "held", n, lambda r: r["readyz_not_200"]) for n in names}
    failed = {n: total(runs, "held", n, lambda r: sum(level["join_failed"] for level in r["levels"])) for n in names}

    def curve_text(n: str) -> str:
        if not curves[n]:
            return "-"
        points = " / ".join(fmt(p, 1) for p in curves[n].values())
        return f"{points} (readyz not 200: {fmt(readyz[n])}, failed joins: {fmt(failed[n])})"

    levels = sorted({level for c in curves.values() for level in c})
    ok = None
    subject_curve = curves.get(SUBJECT) or {}
    if subject_curve and None not in subject_curve.values():
        first, last = subject_curve[min(subject_curve)], subject_curve[max(subject_curve)]
        ok = readyz[SUBJECT] == 0 and not failed[SUBJECT] and last <= 2 * first and last < 100  # type: ignore[operator]
    plain_row(
        f"held: join p99 ms at {' / '.join(f'{level:,}' for level in levels) or '-'} rooms",
        {n: curve_text(n) for n in names},
        "redis: readyz always 200, no failed join, p99 does not grow (last <= 2x first)",
        ok,
    )
    lines = [
        f"### Issue 9 goals: medians over rounds ({baseline} is the baseline of the ratios)",
        "",
        "| figure | " + " | ".join(names) + " | goal | redis |",
        "|---|" + "---|" * len(names) + "---|---|",
    ]
    for label, cells, goal, ok_ in rows:
        if all(cells.get(n, "-") in ("-", "- (-)") for n in names):
            continue  # a scenario the file does not have
        lines.append(f"| {label} | " + " | ".join(cells.get(n, "-") for n in names) + f" | {goal} | {verdict(ok_)} |")
    rounds = {int(r["round"]) for lines_ in runs.values() for r in lines_ if r.get("round") is not None}
    lines.append("")
    lines.append(f"Rounds in the file: {len(rounds) or 'unknown'}.")
    return "\n".join(lines)


def own_tables(runs: Runs, order: list[str]) -> str:
    """Per-round detail of the scenarios the older tables do not cover."""
    out = []
    for scenario, columns in (
        ("manyrooms", ("p50", "p99", "p999")),
        ("roomsheld", ("connect p50", "connect p99")),
        ("idle10k", ("KiB/conn",)),
    ):
        names = [n for n in order if (scenario, n) in runs]
        if not names:
            continue
        out.append(f"\n### {scenario}: per round\n")
        out.append("| server | " + " | ".join(columns) + " | connected / lost / errors |")
        out.append("|---|" + "---|" * (len(columns) + 1))
        for n in names:
            cells: list[list[str]] = [[] for _ in columns]
            extra = []
            for r in runs[(scenario, n)]:
                if "error" in r:
                    extra.append("error")
                    continue
                res = r["result"]
                if scenario == "manyrooms":
                    values = [res["latency_ms"][k] for k in ("p50", "p99", "p999")]
                    extra.append(f"{res['connected']}/{res['clients']} / {res['lost']} / {res['errors']}")
                elif scenario == "roomsheld":
                    values = [res["connect_ms"]["p50"], res["connect_ms"]["p99"]]
                    extra.append(f"{res['connected']}/{res['requested']} / - / {res['errors']}")
                else:
                    values = [res["rss_per_conn_kib"]]
                    extra.append(f"{res['connected']}/{res['requested']} / - / {res['errors']}")
                for cell, value in zip(cells, values):
                    cell.append(fmt(value, 2))
            out.append(f"| {n} | " + " | ".join(", ".join(c) for c in cells) + f" | {', '.join(extra)} |")
    names = [n for n in order if ("held", n) in runs]
    if names:
        out += ["\n### held: per round and level\n"]
        out.append(
            "| server | round | rooms held | join p50 / p99 / max ms | failed | readyz not 200 / polls | RSS MiB |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for n in names:
            for r in runs[("held", n)]:
                if "error" in r:
                    out.append(f"| {n} | {r.get('round', '-')} | error: {r['error'][:80]} | | | | |")
                    continue
                for level in r["result"]["levels"]:
                    j = level["join_ms"]
                    out.append(
                        f"| {n} | {r.get('round', '-')} | {level['rooms_held']:,} | "
                        f"{fmt(j['p50'], 2)} / {fmt(j['p99'], 2)} / {fmt(j['max'], 2)} | {level['join_failed']} | "
                        f"{level['readyz_not_200']} / {level['readyz_polls']} | {level['rss_kib'] / 1024:.1f} |"
                    )
    return "\n".join(out)
