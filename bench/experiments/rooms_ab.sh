#!/usr/bin/env bash
# rooms at 40 msgs/s per sender (8,000 deliveries/s), 8 s window: HEAD vs direct-write prototype, 5 alternating pairs.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
PY=$REPO/.venv/bin/python
OUT=${RESULTS:-$REPO/bench/results}/rooms-ab.jsonl
C="--scenarios rooms --no-redis --rates 40 --refine 0 --step-duration 8 --step-warmup 2"
run() { echo "== $(date -u +%T) $1 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2; cd "$2" && $PY $REPO/../shared/bench/compare.py --name "$1" --port 8806 $C --server "$PY server.py --port {port} --rate-limit 0" --out $OUT >/dev/null; }
for i in 1 2 3 4 5; do
  if (( i % 2 )); then run this_server_memory /tmp/chatsnap; run proto_direct_write /tmp/chatproto-fast
  else run proto_direct_write /tmp/chatproto-fast; run this_server_memory /tmp/chatsnap; fi
done
