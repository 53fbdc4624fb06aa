#!/usr/bin/env bash
# Server CPU at rooms 20x10, 40 msgs/s per sender (8,000 deliveries/s), without compare.py's ramp:
# a quick A/B of two trees (a commit exported with git archive, or a patched copy). From the project root:
#
#   flock /tmp/bench.lock bench/experiments/cpu_at_8000.sh TREE redis|memory|naive [RATE]
#
# Starts redis-server (redis only) on 6398 and the server on 8862, runs ../shared/bench/loadgen.mjs for
# 24 s, reads the server's CPU ticks from /proc over 15 s of it, prints one line: CPU %, µs per delivery,
# deliveries/s, p50/p99, lost, and Redis's CPU % (redis only). Stops what it started.
# Every message limit is off, unless LIMITS gives the rate flags instead, e.g. limits on but never reached:
#   LIMITS="--rate-limit 1000 --rate-burst 2000 --client-rate-limit 0" flock /tmp/bench.lock bench/experiments/cpu_at_8000.sh TREE redis
# EXTRA adds server flags that only some trees know, e.g. the join and room-creation limits (all 200
# clients connect from one address within a second):
#   EXTRA="--join-rate 0 --room-create-rate 0" flock /tmp/bench.lock bench/experiments/cpu_at_8000.sh TREE redis
# SERVER_PIN, REDIS_PIN, LOAD_PIN prefix each process's command, e.g. to place them on cores of their own:
#   SERVER_PIN="taskset -c 0" REDIS_PIN="taskset -c 0" LOAD_PIN="taskset -c 1" ... cpu_at_8000.sh TREE redis
set -euo pipefail
repo=$PWD
tree=$1; bus=$2; rate=${3:-40}
shared=${SHARED:-$repo/../shared/bench}
py=$repo/.venv/bin/python
unlimited="${LIMITS:---rate-limit 0 --client-rate-limit 0} --max-connections-per-client 100000 --max-connections 20000 ${EXTRA:-}"
extra=""; redis_pid=""
if [[ $bus == redis ]]; then
  ${REDIS_PIN:-} redis-server --port 6398 --bind 127.0.0.1 --save '' --appendonly no >/dev/null & redis_pid=$!
  extra="--redis-url redis://127.0.0.1:6398/0"
  for _ in $(seq 50); do redis-cli -p 6398 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
if [[ $bus == naive ]]; then
  ${SERVER_PIN:-} "$py" "$shared/peers/tornado_minimal.py" 8862 >/dev/null 2>&1 & server_pid=$!
else
  # shellcheck disable=SC2086
  (cd "$tree" && exec ${SERVER_PIN:-} "$py" server.py --port 8862 $extra $unlimited >/dev/null 2>&1) & server_pid=$!
fi
trap 'kill $server_pid ${redis_pid} 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -s -o /dev/null localhost:8862/ && break; sleep 0.1; done
out=$(mktemp)
(cd "$shared" && ${LOAD_PIN:-} node loadgen.mjs --url-template 'ws://127.0.0.1:8862/ws/chat/{room}/' --rooms 20 --clients 10 \
  --senders 1 --rate "$rate" --duration 22 --warmup 2 >"$out" 2>/dev/null) & load_pid=$!
sleep 6
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
t0=$(ticks $server_pid); r0=$([[ -n $redis_pid ]] && ticks $redis_pid || echo 0); sleep 15
t1=$(ticks $server_pid); r1=$([[ -n $redis_pid ]] && ticks $redis_pid || echo 0)
wait $load_pid
"$py" - "$tree" "$bus" "$((t1 - t0))" "$out" "$((r1 - r0))" <<'PY'
import json, os, sys
tree, bus, ticks, out, redis_ticks = sys.argv[1:]
result = json.load(open(out))
cpu = int(ticks) / os.sysconf("SC_CLK_TCK") / 15 * 100
delivered = max(result["delivered_msgs_per_s"], 1)
lat = result["latency_ms"]
print(f"{tree:24s} {bus:7s} cpu {cpu:5.1f}%  us/delivery {cpu * 1e4 / delivered:5.1f}  "
      f"delivered/s {delivered}  p50 {lat['p50']} p99 {lat['p99']} lost {result['lost']}  "
      f"redis cpu {int(redis_ticks) / os.sysconf('SC_CLK_TCK') / 15 * 100:.1f}%")
PY
rm -f "$out"
