"""Where an idle connection's memory goes: tracemalloc and a census of live objects, held minus empty.

    .venv/bin/python bench/experiments/idle_census.py [--root TREE] [--connections 2000] [--bus redis]

Starts a throw-away redis-server (with --bus redis) and ``server.py`` of TREE (default this
tree) under a wrapper that, on SIGUSR1, writes a tracemalloc snapshot and a census of the
objects the garbage collector sees (count and ``sys.getsizeof`` per type), with the process's
RSS. One census on the empty server (after a warm-up connection, like compare.py's), then the
shared loadgen opens --connections idle connections over 20 rooms (compare.py's ``conns``), a
second census once all are open; prints both differences per connection: tracemalloc by line
of the allocation, and objects by type. tracemalloc costs memory of its own: RSS here is not
the benchmark's figure (bench/run.py's ``conns`` is).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PY = os.environ.get("PY", str(ROOT / ".venv" / "bin" / "python"))
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared" / "bench"))

# Runs in the server's process: the SIGUSR1 handler, then server.py's main.
WRAPPER = r"""
import gc, os, pickle, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("CENSUS_FRAMES", "1")))
out = os.environ["CENSUS_DIR"]
count = [0]

def census(signum, frame):
    rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
    gc.collect()
    counts, sizes = {}, {}
    for obj in gc.get_objects():
        t = type(obj)
        name = f"{t.__module__}.{t.__qualname__}"
        if t.__name__ == "coroutine":
            name += ":" + obj.__qualname__
        elif t.__name__ == "Task":
            name += ":" + getattr(obj.get_coro(), "__qualname__", "?")
        counts[name] = counts.get(name, 0) + 1
        try:
            sizes[name] = sizes.get(name, 0) + sys.getsizeof(obj)
        except TypeError:
            pass
    want = os.environ.get("CENSUS_REFERRERS")  # e.g. tornado.httputil.HTTPHeaders: who holds the first few
    if want and count[0] == 1:  # the second census: the held connections
        found = [o for o in gc.get_objects() if f"{type(o).__module__}.{type(o).__qualname__}" == want][-3:]
        with open(f"{out}/referrers.txt", "w") as f:
            for obj in found:
                f.write(f"== {want} {len(obj) if hasattr(obj, '__len__') else ''}\n")
                for ref in gc.get_referrers(obj):
                    if ref is found:
                        continue
                    f.write(f"  {type(ref).__qualname__}: {str(ref)[:150]}\n")
                    if isinstance(ref, dict):
                        for ref2 in gc.get_referrers(ref):
                            f.write(f"      <- {type(ref2).__qualname__}: {str(ref2)[:120]}\n")
    snap = tracemalloc.take_snapshot()
    count[0] += 1
    with open(f"{out}/census{count[0]}.pickle", "wb") as f:
        pickle.dump({"counts": counts, "sizes": sizes, "rss_kib": rss,
                     "traced": tracemalloc.get_traced_memory()[0]}, f)
    snap.dump(f"{out}/snap{count[0]}.tracemalloc")
    open(f"{out}/done{count[0]}", "w").close()

signal.signal(signal.SIGUSR1, census)
sys.argv = ["server.py"] + sys.argv[1:]
sys.path.insert(0, os.getcwd())
import server
sys.exit(server.main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


def take(pid: int, workdir: Path, n: int) -> dict:
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (workdir / f"done{n}").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no census after 120 s")
        time.sleep(0.2)
    with open(workdir / f"census{n}.pickle", "rb") as f:
        return pickle.load(f)


def short(filename: str, root: Path) -> str:
    """A file's name relative to the tree, to site-packages or to the standard library."""
    for prefix in (str(root) + "/", str(ROOT) + "/", "site-packages/", "python3.11/"):
        filename = filename.split(prefix)[-1]
    return filename


def report(workdir: Path, before: dict, after: dict, n: int, top: int, root: Path) -> None:
    import tracemalloc

    rss = (after["rss_kib"] - before["rss_kib"]) / n
    print(f"RSS {before['rss_kib']} -> {after['rss_kib']} KiB: {rss:.2f} KiB/conn (tracemalloc's own included)")
    traced = (after["traced"] - before["traced"]) / 1024 / n
    print(f"tracemalloc traced: {traced:.2f} KiB/conn")
    snap0 = tracemalloc.Snapshot.load(str(workdir / "snap1.tracemalloc"))
    snap1 = tracemalloc.Snapshot.load(str(workdir / "snap2.tracemalloc"))
    print("\n== tracemalloc, by line, bytes per connection ==")
    for stat in snap1.compare_to(snap0, "lineno")[:top]:
        frame = stat.traceback[0]
        where = f"{short(frame.filename, root)}:{frame.lineno}"
        print(f"{stat.size_diff / n:8.1f} B  {stat.count_diff / n:6.2f} blocks  {where}")
    if os.environ.get("CENSUS_FRAMES", "1") != "1":
        print("\n== tracemalloc, by traceback ==")
        for stat in snap1.compare_to(snap0, "traceback")[:top]:
            print(f"{stat.size_diff / n:8.1f} B  {stat.count_diff / n:6.2f} blocks")
            for frame in stat.traceback[-6:]:  # the innermost
                print(f"      {short(frame.filename, root)}:{frame.lineno}")
    print("\n== gc census, by type, per connection (getsizeof, not counting non-gc contents) ==")
    rows = []
    for name, count in after["counts"].items():
        dc = count - before["counts"].get(name, 0)
        ds = after["sizes"].get(name, 0) - before["sizes"].get(name, 0)
        rows.append((ds, dc, name))
    for ds, dc, name in sorted(rows, reverse=True)[:top]:
        print(f"{ds / n:8.1f} B  {dc / n:6.2f} objs  {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="the tree whose server.py runs")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--rooms", type=int, default=20)
    ap.add_argument("--bus", choices=("redis", "memory"), default="redis")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    port, redis_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="census-") as tmp:
        workdir = Path(tmp)
        try:
            flags = ["--port", str(port), "--rate-limit", "0", "--client-rate-limit", "0", "--join-rate", "0"]
            flags += ["--room-create-rate", "0", "--max-connections-per-client", "100000", "--max-connections", "20000"]
            if args.bus == "redis":
                procs.append(
                    subprocess.Popen(
                        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                        stdout=subprocess.DEVNULL,
                    )
                )
                wait_port(redis_port)
                flags += ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
            env = dict(os.environ, CENSUS_DIR=tmp, CHAT_COOKIE_SECRET="x" * 43)
            server = subprocess.Popen(
                [PY, "-c", WRAPPER, *flags], cwd=args.root, env=env, stdout=open(workdir / "server.log", "wb")
            )
            procs.append(server)
            try:
                wait_port(port, proc=server)
            except SystemExit:
                print((workdir / "server.log").read_text()[-3000:], file=sys.stderr)
                raise
            url = f"ws://127.0.0.1:{port}/ws/chat/{{room}}/"
            loadgen = ["node", str(SHARED / "loadgen.mjs"), "--url-template", url]
            # compare.py's warm-up, so that the first census is of a server that served (lazy imports and all).
            subprocess.run(
                loadgen + ["--connections-only", "20", "--rooms", "2", "--duration", "1"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            time.sleep(1.0)
            before = take(server.pid, workdir, 1)
            hold = subprocess.Popen(
                loadgen + ["--connections-only", str(args.connections), "--rooms", str(args.rooms), "--duration", "12"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 120
            while hold.poll() is None and time.monotonic() < deadline:
                line = hold.stderr.readline().decode() if hold.stderr else ""
                if "holding" in line:  # the loadgen's line once every connection is open
                    break
            time.sleep(3.0)
            after = take(server.pid, workdir, 2)
            if (workdir / "referrers.txt").exists():
                print((workdir / "referrers.txt").read_text())
            out, _ = hold.communicate(timeout=120)
            result = json.loads(out)
            n = result["connected"]
            print(f"{n}/{args.connections} connected ({args.bus}, {args.root.name})")
            report(workdir, before, after, n, args.top, args.root.resolve())
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
