"""Cost of one message.accepted line through the project's structlog pipeline (config/logging.py)."""

import sys, time, timeit, os

sys.path.insert(0, ".")
import structlog
from config.logging import HotLog, configure_logging


def bench(stream, label, n=50_000):
    configure_logging("vm-8802", "json", stream)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(conn="vm-8802:17", room="bench3", user="guest-d170c8")
    log = structlog.get_logger("chat.ws")
    fields = {"msg_id": "1795536883165-0", "bytes": 100}
    for _ in range(2000):
        log.info("message.accepted", **fields)
    best = min(timeit.repeat(lambda: log.info("message.accepted", **fields), number=n, repeat=5)) / n
    print(f"{label:38s} {best * 1e6:6.2f} µs per line")
    hot = HotLog("chat.ws")  # what socket_inbound logs each accepted message with
    best = min(timeit.repeat(lambda: hot.info("message.accepted", dict(fields)), number=n, repeat=5)) / n
    print(f"{'  the same line through HotLog':38s} {best * 1e6:6.2f} µs per line")


bench(open(os.devnull, "w"), "stdout -> /dev/null")
bench(open("/tmp/prof/logmicro.out", "w"), "stdout -> file (page cache)")
r, w = os.pipe()
import threading


def drain():
    while os.read(r, 1 << 16):
        pass


threading.Thread(target=drain, daemon=True).start()
bench(os.fdopen(w, "w"), "stdout -> pipe (drained by a thread)")
configure_logging("vm-8802", "json", open(os.devnull, "w"))
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
log = structlog.get_logger("chat.ws")
n = 200_000
best = min(timeit.repeat(lambda: log.info("message.accepted", msg_id="1-0", bytes=100), number=n, repeat=5)) / n
print(f"{'level WARNING (info call filtered out)':38s} {best * 1e6:6.2f} µs per line")
