#!/usr/bin/env bash
# One benchmark session: the chosen scenarios for each server, interleaved
# (scenario-major; the server order is reversed on every other round) so that
# drift in the shared machine's load hits all servers alike.  From the project root:
#
#   bench/run_session.sh OUT.jsonl [ROUNDS] [SCENARIOS]
#
# Defaults: 1 round; rooms,latency,conns,broadcast.  Servers: $SERVERS (default
# "min mem redis redispool"):
#   min        tornado_minimal        the peer (../shared/bench/peers), --no-redis
#   mem        this_server_memory     server.py on the in-process bus, --no-redis
#   redis      this_server_redis      server.py on Redis streams (compare.py starts a
#                                     throw-away redis-server on $REDIS_PORT)
#   redispool  this_server_redis_pool the same with ?max_connections=100000 in the
#                                     Redis URL (redis-py 8's asyncio pool caps at 100,
#                                     see bench/RESULTS.md)
# Extra compare.py flags: $COMPARE_ARGS (default --step-duration 4 --step-warmup 1 --refine 2).
# $PY is the Python for compare.py and both servers (default .venv/bin/python);
# $SHARED the harness (default ../shared/bench).  To measure a fixed commit while
# the tree is being edited, run from an export of it:
#   bench/experiments/prepare.sh HEAD && cd /tmp/chatsnap && \
#   PY=$REPO/.venv/bin/python SHARED=$REPO/../shared/bench \
#   $REPO/bench/run_session.sh $REPO/bench/results/sessionN.jsonl 3
# Progress (with the load average before each run) goes to stderr.
set -euo pipefail
out=${1:?usage: bench/run_session.sh OUT.jsonl [ROUNDS] [SCENARIOS]}
rounds=${2:-1}
scenarios=${3:-rooms,latency,conns,broadcast}
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/bench}
REDIS_PORT=${REDIS_PORT:-6391}
SERVERS=${SERVERS:-min mem redis redispool}
COMPARE_ARGS=${COMPARE_ARGS:---step-duration 4 --step-warmup 1 --refine 2}
# The loadgen's clients share 127.0.0.1 and outrun a person: lift the per-address limits (issue 10).
UNLIMITED="--client-rate-limit 0 --join-rate 0 --room-create-rate 0 --max-connections-per-client 100000"
compare() { # name port no-redis? server-command scenario
  local name=$1 port=$2 noredis=$3 cmd=$4 scen=$5
  echo "== $(date -u +%H:%M:%S) round $r $scen $name (loadavg $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # shellcheck disable=SC2086
  "$PY" "$SHARED/compare.py" --name "$name" --port "$port" --redis-port "$REDIS_PORT" \
      $noredis --scenarios "$scen" $COMPARE_ARGS --server "$cmd" --out "$out" >/dev/null
}
run() { # key scenario
  case $1 in
    min)       compare tornado_minimal        8801 --no-redis "$PY $SHARED/peers/tornado_minimal.py {port}" "$2" ;;
    mem)       compare this_server_memory     8802 --no-redis "$PY server.py --port {port} --rate-limit 0 $UNLIMITED" "$2" ;;
    redis)     compare this_server_redis      8803 "" "$PY server.py --port {port} --redis-url redis://127.0.0.1:{redis_port}/0 --rate-limit 0 $UNLIMITED" "$2" ;;
    redispool) compare this_server_redis_pool 8804 "" "$PY server.py --port {port} --redis-url 'redis://127.0.0.1:{redis_port}/0?max_connections=100000' --rate-limit 0 $UNLIMITED" "$2" ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
}
read -r -a fwd <<<"$SERVERS"
rev=(); for ((i=${#fwd[@]}-1; i>=0; i--)); do rev+=("${fwd[i]}"); done
for r in $(seq 1 "$rounds"); do
  for scen in ${scenarios//,/ }; do
    if (( r % 2 )); then order=("${fwd[@]}"); else order=("${rev[@]}"); fi
    for s in "${order[@]}"; do run "$s" "$scen"; done
  done
done
