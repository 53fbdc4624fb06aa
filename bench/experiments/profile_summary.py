"""Group py-spy collapsed stacks (profile.sh output; .gz accepted) into the hot-path buckets of bench/RESULTS.md.

    python3 bench/experiments/profile_summary.py /tmp/prof/mem_broadcast.txt bench/results/profiles/*.collapsed.gz

Percentages are of the samples py-spy took while the server was busy (idle time is not sampled).
"""

"""Group py-spy collapsed stacks (profile.sh; .gz accepted) into the hot-path buckets of bench/RESULTS.md.

    python3 bench/experiments/profile_summary.py /tmp/prof/mem_broadcast.txt bench/results/profiles/*.collapsed.gz

Percentages are of the samples py-spy took while the server was busy (idle time is not sampled).
"""
import collections, gzip, re, sys

for path in sys.argv[1:]:
    tot = 0
    c = collections.Counter()
    for line in gzip.open(path, "rt") if path.endswith(".gz") else open(path):
        s, _, n = line.rstrip().rpartition(" ")
        if not s:
            continue
        n = int(n)
        tot += n
        fr = s.split(";")
        names = [re.sub(r" \(.*", "", x) for x in fr]

        def has(k):
            return any(k in x for x in names)

        def hasf(k):
            return any(k in x for x in fr)

        if has("_fan_out"):
            c["fan-out (RoomBus._fan_out, all of it)"] += n
        if has("create_task") or has("ensure_future"):
            c["  Task creation in write_message (ensure_future)"] += n
        if has("IOStream.write_to_fd"):
            c["  send() syscall (IOStream.write_to_fd)"] += n
        if has("RoomSocket.send_frame"):
            c["  RoomSocket.send_frame incl. write_message"] += n
        if has("_flushed"):
            c["our _flushed callback"] += n
        if hasf("structlog"):
            c["structlog (all log lines)"] += n
        if hasf("_publish") and hasf("structlog"):
            c["  message.accepted log line"] += n
        if hasf("metrics.py") or hasf("prometheus"):
            c["prometheus metrics"] += n
        if has("on_message"):
            c["inbound on_message (parse, publish, log)"] += n
        if has("parse_frame"):
            c["  parse_frame"] += n
        if has("RoomBus.publish"):
            c["  bus publish (incl. redis-py)"] += n
        if hasf("redis/"):
            c["redis-py (all)"] += n
        if has("GroupReader._handle"):
            c["Redis reader _handle (decode+deliver+ack)"] += n
        if has("xack") or has("Pipeline.execute") and has("_handle"):
            c["  XACK pipeline"] += n
        if has("decode_fields"):
            c["  decode_fields"] += n
        if has("_accept_connection") or has("Joining.open"):
            c["handshake/open/join"] += n
        if names[-1] in ("EpollSelector.select",):
            c["epoll (self)"] += n
    print(f"\n{path}: {tot} samples")
    for k, v in sorted(c.items(), key=lambda kv: -kv[1]):
        print(f"{100 * v / tot:5.1f}% {k}")
