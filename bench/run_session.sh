#!/usr/bin/env bash
# One benchmark session: every scenario for the three servers, interleaved
# (scenario-major, server order reversed on every other round) so that drift in
# the shared machine's load hits all three alike.  Run from the project root:
#
#   bench/run_session.sh OUT.jsonl [ROUNDS] [SCENARIOS]
#
# Defaults: 1 round; rooms,latency,conns,broadcast.  Extra compare.py flags go
# in $COMPARE_ARGS (default: --step-duration 4 --step-warmup 1 --refine 2).
# Servers: tornado_minimal (the peer, --no-redis), this_server_memory (--no-redis),
# this_server_redis (compare.py starts a throw-away redis-server on $REDIS_PORT).
set -euo pipefail
out=${1:?usage: bench/run_session.sh OUT.jsonl [ROUNDS] [SCENARIOS]}
rounds=${2:-1}
scenarios=${3:-rooms,latency,conns,broadcast}
PY=${PY:-.venv/bin/python}
REDIS_PORT=${REDIS_PORT:-6391}
COMPARE_ARGS=${COMPARE_ARGS:---step-duration 4 --step-warmup 1 --refine 2}
compare() { # name port no-redis? server-command scenario
  local name=$1 port=$2 noredis=$3 cmd=$4 scen=$5
  echo "== $(date -u +%H:%M:%S) round $r $scen $name (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # shellcheck disable=SC2086
  "$PY" ../shared/bench/compare.py --name "$name" --port "$port" --redis-port "$REDIS_PORT" \
      $noredis --scenarios "$scen" $COMPARE_ARGS --server "$cmd" --out "$out" >/dev/null
}
run_min()   { compare tornado_minimal    8801 --no-redis "$PY ../shared/bench/peers/tornado_minimal.py {port}" "$1"; }
run_mem()   { compare this_server_memory 8802 --no-redis "$PY server.py --port {port} --rate-limit 0" "$1"; }
run_redis() { compare this_server_redis  8803 ""         "$PY server.py --port {port} --redis-url redis://127.0.0.1:{redis_port}/0 --rate-limit 0" "$1"; }
for r in $(seq 1 "$rounds"); do
  for scen in ${scenarios//,/ }; do
    if (( r % 2 )); then run_min "$scen"; run_mem "$scen"; run_redis "$scen"
    else run_redis "$scen"; run_mem "$scen"; run_min "$scen"; fi
  done
done
