"""The issue-9 benchmark in one command: every scenario on every server, in one session.

    .venv/bin/python bench/run.py [--out FILE] [--rounds 3] [--servers ...] [--scenarios ...] [--quick]

On this shared machine hold the benchmark lock: ``flock /tmp/bench.lock .venv/bin/python bench/run.py``.

For each round, for each scenario, each server in turn (the server order reversed
on every other round, so that drift in the machine's load hits every server
alike) runs through ``bench/compare_plus.py`` (the shared harness's compare.py
plus our ``idle10k`` and ``held``), which starts the server (and a throw-away
redis-server where needed), measures, and stops everything it started. A local
Redis Cluster for ``cluster`` is started once per session and stopped at the end;
each of its runs gets a fresh ``--redis-prefix``. Every JSON line gets the round
and the session's settings added and is appended to --out; progress, with the
load average, goes to stderr. Summarise with ``bench/summarize.py FILE``, chart
with ``bench/chart.py FILE``. See bench/README.md for the timing of the defaults.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.redis_cluster import LocalRedisCluster  # noqa: E402

PY = os.environ.get("PY", str(ROOT / ".venv" / "bin" / "python"))
# Our server's flags in every run: the loadgen's clients all come from 127.0.0.1 and send faster than a
# person, so the per-connection and per-address limits would measure themselves; idle10k and held open
# more than the default 10,000 connections per process.
OURS = (
    "--rate-limit 0 --client-rate-limit 0 --join-rate 0 --room-create-rate 0"
    " --max-connections-per-client 100000 --max-connections 20000"
)
# websockets: uvicorn answers a WebSocket upgrade with 404 without it (or wsproto).
PEER_PACKAGES = ["tornado", "redis", "hiredis", "channels", "channels-redis", "daphne", "uvicorn", "websockets"]
PEER_IMPORTS = "import tornado, redis, channels, channels_redis, daphne, uvicorn, websockets"


@dataclass(frozen=True)
class Server:
    key: str  # the name in the JSON lines
    port: int
    needs_redis: bool  # compare.py starts its throw-away redis-server (else --no-redis)
    command: str  # {py} {shared} {peers_py} {ours} {cluster_url} {prefix}, then compare.py's {port} {redis_port}
    low_rates: bool = False  # step scenarios start at 1 msg/s per sender (LOW_RATES), not 10


SERVERS = {
    s.key: s
    for s in (
        Server("naive", 8811, False, "{py} {shared}/peers/tornado_minimal.py {{port}}"),
        Server(
            "channels",
            8812,
            True,
            "env PYTHON={peers_py} {shared}/peers/channels_tutorial/serve.sh --server uvicorn --consumer async "
            "{{port}}",
            low_rates=True,
        ),
        Server("memory", 8813, False, "{py} server.py --port {{port}} {ours}"),
        Server(
            "redis", 8814, True, "{py} server.py --port {{port}} --redis-url redis://127.0.0.1:{{redis_port}}/0 {ours}"
        ),
        Server(
            "cluster",
            8815,
            False,
            "{py} server.py --port {{port}} --redis-cluster --redis-url {cluster_url} --redis-prefix {prefix} {ours}",
        ),
        # The launcher's deployment: its own redis-server (config/redis.conf) and nginx; see bench/nginx2.py.
        # --shutdown-timeout 1: the wrapper must stop all of it within compare.py's 5 s grace before SIGKILL.
        Server(
            "nginx2", 8816, False, "{py} bench/nginx2.py --port {{port}} --processes 2 -- {ours} --shutdown-timeout 1"
        ),
    )
}
COMPARE_SCENARIOS = ["rooms", "broadcast", "latency", "conns", "manyrooms", "roomsheld"]
OWN_SCENARIOS = ["idle10k", "held"]
# Which servers run which scenario by default (--all-pairs runs every pair). The Channels stack runs the four
# scenarios of the table: at 4,000 and 3,000 connections it takes minutes per run and is not a goal.
# idle10k is one process of ours (not nginx2's two; naive's KiB/conn is in conns, and its goal is absolute);
# held is our server's join curve only.
DEFAULT_PAIRS = {
    "manyrooms": {"naive", "memory", "redis", "cluster", "nginx2"},
    "roomsheld": {"naive", "memory", "redis", "cluster", "nginx2"},
    "idle10k": {"memory", "redis", "cluster"},
    "held": {"memory", "redis", "cluster"},
}
# compare.py's step settings for the full run, chosen so that 3 rounds fit in about 50 minutes (measured per run:
# bench/README.md "Timing"): a step is ~5 s (connect, 0.5 s settle, 0.5 s warm-up, 3 s measured, drain); the rates
# start at 10 per sender (every server but Channels passes 1-5) and keep 40 (8,000 deliveries/s in rooms: the
# CPU-per-delivery figure); 1 bisection step puts the edge within 1.5x. A 3 s window keeps CPU % within ~±10 %.
FULL = ["--rates", "10,20,40,80,160,320,640,1280", "--step-duration", "3", "--step-warmup", "0.5", "--refine", "1"]
# The Channels stack fails between 10 and 20 per sender in rooms and at 1 in broadcast: its steps start lower.
LOW_RATES = "1,2,5,10,20,40,80"
QUICK = ["--rates", "10,40,160", "--step-duration", "1", "--step-warmup", "0.5", "--refine", "0"]
QUICK_ENV = {"HELD_LEVELS": "100,1000", "HELD_PROBES": "50", "IDLE10K_CONNECTIONS": "2000"}


def log(text: str) -> None:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    now = datetime.datetime.now(datetime.UTC)
    print(f"[bench {now:%H:%M:%S}] {text} (loadavg {load})", file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    """idle10k and held open 10,000 sockets in one server and one loadgen: children inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 12_000:
        log(f"warning: the open-files limit is {hard}; idle10k and held need about 10,100 (raise `ulimit -Hn`)")


def ensure_peers_venv(python: Path) -> None:
    """The Channels stack's venv: created with python3 -m venv, and its packages installed, when missing."""
    if python.exists() and subprocess.run([str(python), "-c", PEER_IMPORTS], capture_output=True).returncode == 0:
        return
    venv = python.parent.parent
    if not python.exists():
        log(f"creating the peers venv {venv}")
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=300)
    log(f"installing {' '.join(PEER_PACKAGES)} into {venv}")
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True, timeout=900)


def relative(path: str | Path) -> str:
    """``path`` relative to the project root when the two share more than ``/``; else as given."""
    absolute = os.path.abspath(path)
    if os.path.commonpath([absolute, str(ROOT)]) != os.sep:
        return os.path.relpath(absolute, ROOT)
    return str(path)


def pairs(args: argparse.Namespace, round_no: int) -> Iterator[tuple[str, Server]]:
    """(scenario, server) in session order: scenario-major, the servers reversed every other round."""
    servers = [SERVERS[k] for k in args.servers]
    if round_no % 2 == 0:
        servers.reverse()
    for scenario in args.scenarios:
        for server in servers:
            if args.all_pairs or server.key in DEFAULT_PAIRS.get(scenario, {server.key}):
                yield scenario, server


def run_one(
    args: argparse.Namespace, scenario: str, server: Server, round_no: int, cluster_url: str, session: str
) -> dict:
    # Relative to the project root (compare.py runs the command from there): the JSON lines record the
    # command, and a result file should not carry one machine's absolute paths.
    command = server.command.format(
        py=relative(PY),
        shared=relative(args.shared),
        peers_py=args.peers_python,
        ours=OURS,
        cluster_url=cluster_url,
        prefix=f"b{session}r{round_no}{scenario}",
    )
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        argv = [
            PY,
            str(ROOT / "bench" / "compare_plus.py"),
            "--shared",
            str(args.shared),
            "--name",
            server.key,
            "--port",
            str(server.port),
            "--redis-port",
            str(args.redis_port),
            "--scenarios",
            scenario,
            *args.compare_args,
            "--server",
            command,
            "--out",
            out.name,
        ]
        if server.low_rates and "--rates" in argv:
            argv[argv.index("--rates") + 1] = LOW_RATES
        if not server.needs_redis:
            argv.insert(argv.index("--scenarios"), "--no-redis")
        if args.server_log:
            argv += ["--server-log", args.server_log]
        started = time.monotonic()
        error = run_compare(argv, args.run_timeout)
        lines = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    line = (
        lines[-1] if lines else {"name": server.key, "scenario": scenario, "error": error or "compare.py wrote nothing"}
    )
    line.update(round=round_no, session=session, bench_wall_s=round(time.monotonic() - started, 1))
    line["bench"] = {"quick": args.quick, "compare_args": args.compare_args, "ours": OURS}
    return line


def run_compare(argv: list[str], timeout: float) -> str | None:
    """Run compare_plus.py; on a timeout, Ctrl-C or SIGTERM, stop it so that it stops what it started.

    It runs in a session of its own (a Ctrl-C at the terminal reaches only this process) and is stopped
    with one SIGINT: its KeyboardInterrupt runs compare.py's finally blocks, which stop the server and
    the redis-server. A SIGTERM or SIGKILL would leave both running.
    """
    # compare.py's stdout repeats the JSON line: the file is the record, the terminal gets stderr.
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(timeout)
        return None
    except subprocess.TimeoutExpired:
        stop_compare(process)
        return f"timed out after {timeout:.0f} s"
    except BaseException:
        stop_compare(process)
        raise


def stop_compare(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)  # compare.py gives the server 5 s after SIGTERM, then SIGKILL
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON lines appended here (default bench/results/run-<UTC time>.jsonl)")
    parser.add_argument("--rounds", type=int, help="default 3 (1 with --quick)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of: " + ", ".join(SERVERS))
    parser.add_argument(
        "--scenarios",
        default=",".join(COMPARE_SCENARIOS + OWN_SCENARIOS),
        help="comma-separated, of: " + ", ".join(COMPARE_SCENARIOS + OWN_SCENARIOS),
    )
    parser.add_argument("--all-pairs", action="store_true", help="every scenario on every server (see DEFAULT_PAIRS)")
    parser.add_argument("--quick", action="store_true", help="1 round, short steps, small held/idle10k: to try it")
    parser.add_argument(
        "--compare-args", help="compare.py's flags instead of the defaults (one string, e.g. '--rates 10,40')"
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("SHARED", ROOT.parent / "shared" / "bench")),
        help="the shared harness (default $SHARED or ../shared/bench)",
    )
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=Path(os.environ.get("PEERS_PYTHON", Path.home() / ".venvs" / "peers" / "bin" / "python")),
        help="Python of the Channels venv (default $PEERS_PYTHON or ~/.venvs/peers/bin/python; created if missing)",
    )
    parser.add_argument("--redis-port", type=int, default=6396, help="compare.py's throw-away redis-server")
    parser.add_argument("--server-log", help="append every server's output here (default: discarded)")
    parser.add_argument("--run-timeout", type=float, default=900, help="s for one (server, scenario) run")
    args = parser.parse_args()
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for key in args.servers:
        if key not in SERVERS:
            parser.error(f"unknown server {key!r}")
    for name in args.scenarios:
        if name not in COMPARE_SCENARIOS + OWN_SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.compare_args = shlex.split(args.compare_args) if args.compare_args else (QUICK if args.quick else FULL)
    args.shared = args.shared.resolve()
    if not (args.shared / "compare.py").exists():
        parser.error(f"no compare.py in {args.shared}: pass --shared or set SHARED")
    if not (args.shared / "node_modules" / "ws").exists():
        parser.error(f"the loadgen's ws package is missing: (cd {args.shared} && npm install)")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M")
    args.out = Path(args.out or ROOT / "bench" / "results" / f"run-{stamp}.jsonl")
    args.session = stamp
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM ends the session like Ctrl-C (also when started as a background job, which ignores SIGINT):
    # the running compare.py is stopped, then the finally blocks below stop the cluster.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise_fd_limit()
    # One secret for every server of the session, in the environment (never on a command line).
    os.environ.setdefault("CHAT_COOKIE_SECRET", secrets.token_urlsafe(32))
    if args.quick:
        os.environ.update({k: v for k, v in QUICK_ENV.items() if k not in os.environ})
    if "channels" in args.servers:
        ensure_peers_venv(args.peers_python)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plan = [(r, s, srv) for r in range(1, args.rounds + 1) for s, srv in pairs(args, r)]
    what = f"{args.rounds} round(s) of {','.join(args.scenarios)} on {','.join(args.servers)}"
    log(f"{len(plan)} runs: {what} -> {args.out}")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        cluster = None
        cluster_url = ""
        try:
            if "cluster" in args.servers:
                cluster = LocalRedisCluster(Path(workdir))
                cluster.start()
                cluster_url = cluster.url
            for done, (round_no, scenario, server) in enumerate(plan):
                elapsed = time.monotonic() - began
                eta = f", ~{elapsed / done * (len(plan) - done) / 60:.0f} min left" if done else ""
                log(f"[{done + 1}/{len(plan)}] round {round_no} {scenario} {server.key}{eta}")
                line = run_one(args, scenario, server, round_no, cluster_url, args.session)
                if "error" in line:
                    log(f"  {server.key}/{scenario} failed: {line['error']}")
                with args.out.open("a") as f:
                    f.write(json.dumps(line) + "\n")
        finally:
            if cluster is not None:
                cluster.stop()
    log(f"done in {(time.monotonic() - began) / 60:.1f} min: {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: everything it started is stopped; the lines written so far stay in --out")
        sys.exit(130)
