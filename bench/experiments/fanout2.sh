#!/usr/bin/env bash
# Direct-write prototype vs HEAD vs tornado_minimal: rooms at fixed steps (3 rounds), then broadcast step search (2 rounds).
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
PY=$REPO/.venv/bin/python
OUT=${RESULTS:-$REPO/bench/results}/fanout-proto.jsonl
run() { # name dir cmd compare-args
  echo "== $(date -u +%T) $1 $4 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  cd "$2" && $PY $REPO/../shared/bench/compare.py --name "$1" --port 8805 --no-redis --step-duration 4 --step-warmup 1 $4 --server "$3" --out $OUT >/dev/null
}
M() { run tornado_minimal $REPO/../shared/bench "$PY peers/tornado_minimal.py {port}" "$1"; }
S() { run this_server_memory /tmp/chatsnap "$PY server.py --port {port} --rate-limit 0" "$1"; }
F() { run proto_direct_write /tmp/chatproto-fast "$PY server.py --port {port} --rate-limit 0" "$1"; }
R="--scenarios rooms --rates 20,40,80 --refine 0"
for order in "M S F" "F S M" "S F M"; do for v in $order; do $v "$R"; done; done
B="--scenarios broadcast --rates 20,40,80,120,160,240 --refine 2"
for order in "M S F" "F S M"; do for v in $order; do $v "$B"; done; done
