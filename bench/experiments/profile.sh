#!/usr/bin/env bash
# Profile one server under a fixed load with py-spy (12 s of samples at 250 Hz, collapsed stacks).
#   bench/experiments/profile.sh NAME DIR PORT 'SERVER CMD with {port} [{redis_port}]' LOADGEN-ARGS...
# e.g. bench/experiments/profile.sh mem_broadcast /tmp/chatsnap 8821 \
#        '$REPO/.venv/bin/python server.py --port {port} --rate-limit 0' \
#        --rooms 1 --clients 200 --senders 1 --rate 30 --duration 16 --warmup 1
# Needs py-spy: python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy ($PYSPY).
# Writes /tmp/prof/NAME.txt (collapsed stacks) and NAME.loadgen.json; summarise with profile_summary.py.
# A redis-server on 127.0.0.1:6393 is started (and stopped) when the command names {redis_port}.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)  # the repository root
name=$1 dir=$2 port=$3 cmd=$4; shift 4
PYSPY=${PYSPY:-/tmp/pyspy/bin/py-spy}
LOADGEN=${LOADGEN:-$REPO/../shared/bench/loadgen.mjs}
mkdir -p /tmp/prof
cd "$dir"
redis=""
if [[ "$cmd" == *redis_port* ]]; then
  redis-server --port 6393 --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null 2>&1 & redis=$!
  sleep 0.5
fi
cmd=${cmd//\{port\}/$port}; cmd=${cmd//\{redis_port\}/6393}
bash -c "exec $cmd" >/dev/null 2>&1 & srv=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
node "$LOADGEN" --url-template "ws://127.0.0.1:$port/ws/chat/{room}/" --connections-only 20 --rooms 2 --duration 1 >/dev/null 2>&1
node "$LOADGEN" --url-template "ws://127.0.0.1:$port/ws/chat/{room}/" "$@" > /tmp/prof/$name.loadgen.json 2>/dev/null & lg=$!
sleep 4
"$PYSPY" record ${PYSPY_ARGS:-} --pid $srv --duration 12 --rate 250 --format raw -o /tmp/prof/$name.txt >/dev/null 2>&1
wait $lg
kill $srv; wait $srv 2>/dev/null
if [[ -n "$redis" ]]; then kill $redis; wait $redis 2>/dev/null; fi
python3 -c "
import json; r=json.load(open('/tmp/prof/$name.loadgen.json'))
print('$name', 'delivered/s', r['delivered_msgs_per_s'], 'lost', r['lost'], 'p50', r['latency_ms']['p50'], 'p99', r['latency_ms']['p99'], 'closes', r['unexpected_closes'])"
