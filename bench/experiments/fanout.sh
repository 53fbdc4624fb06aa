#!/usr/bin/env bash
# Fan-out prototypes vs HEAD vs tornado_minimal: broadcast at fixed steps, 3 rounds, order rotated.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
PY=$REPO/.venv/bin/python
OUT=${RESULTS:-$REPO/bench/results}/fanout-proto.jsonl
C="--scenarios broadcast --no-redis --rates 20,40,80 --refine 0 --step-duration 4 --step-warmup 1"
run() { # name dir cmd
  echo "== $(date -u +%T) $1 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  cd "$2" && $PY $REPO/../shared/bench/compare.py --name "$1" --port 8805 $C --server "$3" --out $OUT >/dev/null
}
M() { run tornado_minimal $REPO/../shared/bench "$PY peers/tornado_minimal.py {port}"; }
S() { run this_server_memory /tmp/chatsnap "$PY server.py --port {port} --rate-limit 0"; }
F() { run proto_direct_write /tmp/chatproto-fast "$PY server.py --port {port} --rate-limit 0"; }
G() { run proto_direct_write_watermark /tmp/chatproto-fast3 "$PY server.py --port {port} --rate-limit 0"; }
for order in "M S F G" "G F S M" "S G M F"; do
  for v in $order; do $v; done
done
