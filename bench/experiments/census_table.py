"""The table of bench/results/issue-24-memory.md: idle_census.py's by-line lists grouped by what holds the memory.

    .venv/bin/python bench/experiments/census_table.py bench/results/issue-24-census-before.txt \
        bench/results/issue-24-census-after.txt

The grouping is by the allocating line (file:line, innermost frame), read off the by-traceback
lists (CENSUS_FRAMES=12) of d58e830 and this branch on Tornado 6.6.1: other versions move lines.
Lines of 40 B or more that no rule takes are printed on stderr.
"""

import re, sys


def load(path):
    d = {}
    for line in open(path):
        if line.startswith("== gc census"):
            break
        m = re.match(r"\s*(-?[\d.]+) B\s+(-?[\d.]+) blocks\s+(\S+)$", line)
        if m:
            d[m.group(3)] = d.get(m.group(3), 0) + float(m.group(1))
    tot = float(re.search(r"traced: ([\d.]+)", open(path).read()).group(1)) * 1024
    return d, tot


CATS = [
    ("A", "The handshake's coroutines, their Task and locals, kept suspended while the receive loop ran"),
    ("B", "The handshake's request headers, a local of `WebSocketHandler.get`"),
    ("C", "`IOStream`'s two write queues (empty deques)"),
    (
        "D",
        "HTTP/1 objects after the upgrade: `HTTP1Connection`, its Futures, the server connection's"
        " finished request loop, the request context",
    ),
    ("E", "Close-code watcher: a closure replacing `close` per protocol (and the dict it made)"),
    ("F", "The receive loop's state as callbacks: `FrameReader`, its context"),
    ("G", "The socket watched by the loop: Tornado's handler table and readers set, uvloop's poll handle"),
    ("H", "The handler (`RoomSocket`, slots; its dict of the 7 methods Tornado disables) and the protocol (slots)"),
    ("I", "The `IOStream` object and the accepted socket"),
    ("J", "The request left after the upgrade: start line, method, path, query, remote address"),
    ("K", "The pending read's Future"),
    ("L", "Bus and log: room seat, presence entry, id key, identity, registry and ping wheel entries, log context"),
    ("Z", "Other (each under 40 B per connection)"),
]


def cat(key, size):
    f, _, line = key.rpartition(":")
    line = int(line) if line.isdigit() else 0
    if f in ("asyncio/tasks.py", "_weakrefset.py", "tornado/gen.py", "<string>", "functools.py", "asyncio/futures.py"):
        return "A"
    if f == "tornado/web.py" and line in (2001, 2002, 2004, 2679, 2680, 2682, 1990, 1993, 2000):
        return "A"
    if f == "tornado/websocket.py" and line in (254, 255, 281, 917, 956, 992, 1000, 1008, 279):
        return "A"
    if f == "handlers/socket_handshake.py":
        return "A" if size > 200 else "L"
    if f == "handlers/websocket/slots.py" and line == 85:
        return "A"
    if f == "tornado/httputil.py" and line in (276, 306, 323, 324, 214, 316):
        return "B"
    if f == "tornado/iostream.py" and line in (117, 272, 283):
        return "C"
    if f == "handlers/websocket/stream.py":
        return "C"
    if f in ("tornado/http1connection.py", "tornado/httpserver.py") or (f == "tornado/iostream.py" and line == 551):
        return "D"
    if f == "tornado/routing.py":
        return "D"
    if f == "handlers/websocket/control.py" or f == "handlers/room_socket.py":
        return "E"
    if f == "handlers/websocket/reader.py" or (f == "handlers/websocket/slots.py" and line in (97,)):
        return "F"
    if f in ("tornado/platform/asyncio.py", "tornado/ioloop.py") or (
        f == "tornado/iostream.py" and line in (1100, 1074)
    ):
        return "G"
    if (f == "tornado/web.py" and line in (2665, 2668, 1974, 1975, 1223, 2661)) or f == "handlers/websocket/slots.py":
        return "H"
    if (
        f in ("tornado/tcpserver.py", "socket.py")
        or (f == "tornado/iostream.py" and line in (268, 1159))
        or f == "handlers/websocket/accept.py"
    ):
        return "I"
    if f in ("tornado/httputil.py", "tornado/escape.py", "copy.py", "urllib/parse.py"):
        return "J"
    if f == "tornado/iostream.py" and line == 840:
        return "K"
    if f.startswith("bus/") or f.startswith("structlog") or f.startswith("handlers/"):
        return "L"
    return "Z"


b, bt = load(sys.argv[1])
a, at = load(sys.argv[2])
sums = {"before": {}, "after": {}}
unc = []
for name, d in (("before", b), ("after", a)):
    for k, v in d.items():
        c = cat(k, v)
        if c == "Z" and abs(v) >= 40:
            unc.append((name, k, v))
        sums[name][c] = sums[name].get(c, 0) + v
print("| what | before, B per connection | after | ")
print("|---|---|---|")
for c, desc in CATS:
    x = sums["before"].get(c, 0)
    y = sums["after"].get(c, 0)
    if c == "Z":
        x += bt - sum(b.values())
        y += at - sum(a.values())
    print(f"| {desc} | {x:.0f} | {y:.0f} |")
print(f"| **All traced** | **{bt:.0f} ({bt / 1024:.1f} KiB)** | **{at:.0f} ({at / 1024:.1f} KiB)** |")
print("uncategorised >=40:", unc, file=sys.stderr)
