#!/usr/bin/env bash
# A/B: write_message (HEAD) vs direct stream write (working tree), broadcast, memory bus.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
OUT=$REPO/bench/results/direct-write-ab.jsonl
PY=$REPO/.venv/bin/python
for round in 1 2; do
  order="old new"; [ $round = 2 ] && order="new old"
  for v in $order; do
    cd /tmp/chat_$v
    echo "== $(date -u +%H:%M:%S) round $round $v loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    $PY $REPO/../shared/bench/compare.py --name "memory_$v" --no-redis --port 8810 --scenarios broadcast \
      --step-duration 3 --step-warmup 1 --refine 1 \
      --server "$PY server.py --port {port} --rate-limit 0" --out $OUT
  done
done
