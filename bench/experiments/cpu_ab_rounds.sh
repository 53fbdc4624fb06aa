#!/usr/bin/env bash
# A/B of two exported trees with cpu_at_8000.sh (Redis bus, rooms 20x10, 8,000 deliveries/s): each round
# runs both trees under one hold of the bench lock, the order reversed every other round. From the project root:
#
#   git archive A | tar -x -C /tmp/ab-x/before; git archive B | tar -x -C /tmp/ab-x/after
#   bench/experiments/cpu_ab_rounds.sh /tmp/ab-x ROUNDS > OUT.txt
#
# Summarise the lines with bench/experiments/cpu_ab_summary.py OUT.txt (medians, per-round ratios).
set -euo pipefail
base=$1; rounds=${2:-8}
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then order="before after"; else order="after before"; fi
  flock /tmp/bench.lock bash -c "for t in $order; do echo \"round $r \$t \$(date -u +%H:%M:%S) load \$(cut -d' ' -f1 /proc/loadavg)\"; bench/experiments/cpu_at_8000.sh $base/\$t redis; done"
done
