#!/usr/bin/env bash
# Python calls per chat message: the server under cProfile at rooms 20x10, 40 msgs/s per sender
# (8,000 deliveries/s) through Redis for 10 s, then calls per message by function and by module.
# cProfile's times are wall time and inflated by its own cost: read the counts, not the times.
# A coroutine counts once per resumption (on_message and publish show 2 per message). From the root:
#
#   flock /tmp/bench.lock bench/experiments/call_counts.sh TREE OUT.pstats > summary.txt
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
(cd "$tree" && exec "$py" -m cProfile -o "$out" server.py --port 8862 $bus_url \
  --rate-limit 0 --client-rate-limit 0 --max-connections-per-client 100000 --max-connections 20000 \
  --join-rate 0 --room-create-rate 0 >/dev/null 2>&1) & server_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null localhost:8862/ && break; sleep 0.1; done
load=$(mktemp)
(cd "$shared" && node loadgen.mjs --url-template 'ws://127.0.0.1:8862/ws/chat/{room}/' --rooms 20 --clients 10 \
  --senders 1 --rate 40 --duration 10 --warmup 1 >"$load" 2>/dev/null)
kill -TERM $server_pid; wait $server_pid || true  # SIGTERM: the server drains and cProfile writes $out
kill $redis_pid; wait 2>/dev/null || true
"$py" - "$out" "$load" <<'PY'
import collections, json, pstats, sys
out, load = sys.argv[1:]
messages = json.load(open(load))["sent_total"]
stats = pstats.Stats(out).stats
calls = sum(v[1] for v in stats.values())
print(f"messages {messages}, calls {calls}, calls per message {calls / messages:.0f} (start-up and shutdown included)")
def where(f, n):
    return n.split(" of ")[0] if f == "~" else "/".join(f.split("/")[-2:])
by_module = collections.Counter()
for (f, _, n), v in stats.items():
    by_module[where(f, n)] += v[1] / messages
print("== calls per message by module (C functions by name)")
for name, count in by_module.most_common(30):
    print(f"{count:7.2f}  {name}")
print("== calls per message by function")
for (f, line, n), v in sorted(stats.items(), key=lambda kv: -kv[1][1])[:40]:
    print(f"{v[1] / messages:7.2f}  {where(f, n)}:{line} {n}")
PY
rm -f "$load"
