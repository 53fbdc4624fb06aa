"""Medians and per-round ratios of cpu_ab_rounds.sh output: us per delivery, p50 and p99, after against before.

python3 bench/experiments/cpu_ab_summary.py OUT.txt [OUT2.txt ...]
"""

import re
import statistics
import sys

LINE = re.compile(
    r"\S*/(before|after)\s+(?:redis|memory)\s+cpu\s+([\d.]+)%\s+us/delivery\s+([\d.]+)\s+delivered/s\s+([\d.]+)"
    r"\s+p50\s+([\d.]+)\s+p99\s+([\d.]+)\s+lost\s+(\d+)"
)
runs: dict[str, list[tuple[float, ...]]] = {"before": [], "after": []}
pairs: list[tuple[float, float]] = []
for path in sys.argv[1:]:
    round_runs: dict[str, tuple[float, ...]] = {}
    for line in open(path):
        if match := LINE.match(line):
            values = tuple(float(x) for x in match.groups()[1:])
            runs[match.group(1)].append(values)
            round_runs[match.group(1)] = values
            if len(round_runs) == 2:  # the two runs of one round, under one hold of the lock
                pairs.append(
                    (round_runs["after"][1] / round_runs["before"][1], round_runs["after"][4] / round_runs["before"][4])
                )
                round_runs = {}
medians = {}
for tree, values in runs.items():
    medians[tree] = [statistics.median(v[i] for v in values) for i in range(6)]
    cpu, us, rate, p50, p99, lost = medians[tree]
    print(
        f"{tree:6s} runs {len(values)}  cpu {cpu:.1f}%  us/delivery {us:.1f}  delivered/s {rate:.0f}",
        f" p50 {p50:.3f}  p99 {p99:.2f}  lost {lost:.0f}",
    )
b, a = medians["before"], medians["after"]
print(f"after/before of the medians: us/delivery {a[1] / b[1]:.3f}  p50 {a[3] / b[3]:.3f}  p99 {a[4] / b[4]:.3f}")
print(
    "per-round after/before us/delivery:",
    " ".join(f"{p[0]:.3f}" for p in pairs),
    f"median {statistics.median(p[0] for p in pairs):.3f}",
)
print(
    "per-round after/before p99:",
    " ".join(f"{p[1]:.2f}" for p in pairs),
    f"median {statistics.median(p[1] for p in pairs):.3f}",
)
