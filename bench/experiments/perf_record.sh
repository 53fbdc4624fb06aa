#!/usr/bin/env bash
# CPU of the server by perf (not py-spy): rooms 20x10 at 40 msgs/s per sender (8,000 deliveries/s)
# through Redis, 10 s of `perf record -g` at 999 Hz, then where it went by library and by system call.
# py-spy counts a thread that is runnable but preempted as busy (a write that wakes Redis on the same
# core is then "expensive"); perf's samples are CPU only. From the project root:
#
#   flock /tmp/bench.lock bench/experiments/perf_record.sh TREE OUT.perf > summary.txt
#
# Starts redis-server on 6398 and the server on 8862, stops both. Needs perf (linux-perf).
set -euo pipefail
repo=$PWD
tree=$1; out=$2
shared=${SHARED:-$repo/../shared/bench}
py=$repo/.venv/bin/python
bus_url="--redis-url redis://127.0.0.1:6398/0"
[[ ${BUS:-redis} == memory ]] && bus_url=""  # BUS=memory: the in-process bus (Redis starts all the same, unused)
redis-server --port 6398 --bind 127.0.0.1 --save '' --appendonly no >/dev/null & redis_pid=$!
for _ in $(seq 50); do redis-cli -p 6398 ping >/dev/null 2>&1 && break; sleep 0.1; done
# shellcheck disable=SC2086
(cd "$tree" && exec "$py" server.py --port 8862 $bus_url --rate-limit 0 \
  --client-rate-limit 0 --max-connections-per-client 100000 --max-connections 20000 --join-rate 0 \
  --room-create-rate 0 >/dev/null 2>&1) & server_pid=$!
trap 'kill $server_pid $redis_pid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -s -o /dev/null localhost:8862/ && break; sleep 0.1; done
load=$(mktemp)
(cd "$shared" && node loadgen.mjs --url-template 'ws://127.0.0.1:8862/ws/chat/{room}/' --rooms 20 --clients 10 \
  --senders 1 --rate 40 --duration 20 --warmup 2 >"$load" 2>/dev/null) & load_pid=$!
sleep 6
perf record -F 999 -g -p "$server_pid" -o "$out" -- sleep 10 >/dev/null 2>&1
wait $load_pid
"$py" -c "import json,sys; r=json.load(open(sys.argv[1])); print('delivered/s', r['delivered_msgs_per_s'], 'lost', r['lost'])" "$load"
rm -f "$load"
echo "== by library (self)"
perf report -i "$out" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -12
echo "== system calls and kernel paths (with children)"
perf report -i "$out" --children --sort sym -g none 2>/dev/null \
  | grep -E 'do_syscall_64|__x64_sys_|ksys_write|ksys_read|handle_softirqs|__schedule' | head -14
