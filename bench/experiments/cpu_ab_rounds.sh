#!/usr/bin/env bash
# A/B of two exported trees with cpu_at_8000.sh (rooms 20x10, 8,000 deliveries/s): each round runs both
# trees under one hold of the bench lock, the order reversed every other round. From the project root:
#
#   git archive A | tar -x -C /tmp/ab-x/before; git archive B | tar -x -C /tmp/ab-x/after
#   bench/experiments/cpu_ab_rounds.sh /tmp/ab-x ROUNDS [FIRST] > OUT.txt
#
# BUS=memory measures the in-process bus instead of Redis. AFTER_FLAGS (and BEFORE_FLAGS) add server flags
# to one side only, for flags the other tree does not know:
#   AFTER_FLAGS="--join-rate 0 --room-create-rate 0" bench/experiments/cpu_ab_rounds.sh /tmp/ab-x 8 > OUT.txt
#
# Summarise the lines with bench/experiments/cpu_ab_summary.py OUT.txt (medians, per-round ratios).
set -euo pipefail
base=$1; rounds=${2:-8}; first=${3:-1}; bus=${BUS:-redis}  # FIRST: number of the first round, to resume
export BEFORE_FLAGS=${BEFORE_FLAGS:-} AFTER_FLAGS=${AFTER_FLAGS:-}
for r in $(seq "$first" "$((first + rounds - 1))"); do
  if (( r % 2 )); then order="before after"; else order="after before"; fi
  flock /tmp/bench.lock bash -c "for t in $order; do echo \"round $r \$t \$(date -u +%H:%M:%S) load \$(cut -d' ' -f1 /proc/loadavg)\"; \
    if [[ \$t == after ]]; then extra=\$AFTER_FLAGS; else extra=\$BEFORE_FLAGS; fi; \
    EXTRA=\$extra bench/experiments/cpu_at_8000.sh $base/\$t $bus; done"
done
