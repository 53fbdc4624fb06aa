#!/usr/bin/env bash
# System calls per chat message: rooms 20x10, 40 msgs/s per sender (8,000 deliveries/s), the server
# under `strace -c -f` for 8 s (its counts, not its times: strace slows every call). Divide by the
# recvfrom count (one per client frame read, so one per message) to get calls per message. From the root:
#
#   flock /tmp/bench.lock bench/experiments/syscalls_per_message.sh TREE redis|memory > counts.txt
#
# Starts redis-server (redis only) on 6398 and the server on 8862, stops both. Needs strace.
set -euo pipefail
repo=$PWD
tree=$1; bus=$2
shared=${SHARED:-$repo/../shared/bench}
py=$repo/.venv/bin/python
extra=""; redis_pid=""
if [[ $bus == redis ]]; then
  redis-server --port 6398 --bind 127.0.0.1 --save '' --appendonly no >/dev/null & redis_pid=$!
  extra="--redis-url redis://127.0.0.1:6398/0"
  for _ in $(seq 50); do redis-cli -p 6398 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# shellcheck disable=SC2086
(cd "$tree" && exec "$py" server.py --port 8862 $extra --rate-limit 0 --client-rate-limit 0 \
  --max-connections-per-client 100000 --max-connections 20000 --join-rate 0 --room-create-rate 0 >/dev/null 2>&1) & server_pid=$!
trap 'kill $server_pid $redis_pid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -s -o /dev/null localhost:8862/ && break; sleep 0.1; done
(cd "$shared" && node loadgen.mjs --url-template 'ws://127.0.0.1:8862/ws/chat/{room}/' --rooms 20 --clients 10 \
  --senders 1 --rate 40 --duration 16 --warmup 2 >/dev/null 2>&1) & load_pid=$!
sleep 5
counts=$(mktemp)
timeout -s INT 8 strace -c -f -p "$server_pid" -o "$counts" 2>/dev/null || true
wait $load_pid
# strace -c's columns: % time, seconds, usecs/call, calls, [errors,] syscall
awk '$4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" { calls[$NF] = $4; order[++k] = $NF }
  END { n = calls["recvfrom"]; printf "%-14s %9s %9s\n", "syscall", "calls", "per msg"
        for (i = 1; i <= k; i++) printf "%-14s %9d %9.2f\n", order[i], calls[order[i]], calls[order[i]] / n }' "$counts"
rm -f "$counts"
