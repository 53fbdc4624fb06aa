#!/usr/bin/env bash
# Per-message log line cost: rooms at fixed steps 20 and 40 msgs/s per sender, 3 rounds, order rotated.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
PY=$REPO/.venv/bin/python
OUT=${RESULTS:-$REPO/bench/results}/logcost.jsonl
C="--scenarios rooms --no-redis --rates 20,40 --refine 0 --step-duration 4 --step-warmup 1"
A() { cd /tmp/chatsnap && $PY $REPO/../shared/bench/compare.py --name log_discarded --port 8802 $C --server "$PY server.py --port {port} --rate-limit 0" --out $OUT >/dev/null; }
B() { rm -f /tmp/chat-bench-server.log; cd /tmp/chatsnap && $PY $REPO/../shared/bench/compare.py --name log_to_file --port 8802 $C --server-log /tmp/chat-bench-server.log --server "$PY server.py --port {port} --rate-limit 0" --out $OUT >/dev/null; echo "log file: $(wc -l < /tmp/chat-bench-server.log) lines, $(du -k /tmp/chat-bench-server.log | cut -f1) KiB" >&2; }
W() { cd /tmp/chatproto-quiet && $PY $REPO/../shared/bench/compare.py --name log_level_warning --port 8802 $C --server "$PY server.py --port {port} --rate-limit 0" --out $OUT >/dev/null; }
for order in "A B W" "B W A" "W A B"; do
  for v in $order; do echo "== $(date -u +%T) $v loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2; $v; done
done
