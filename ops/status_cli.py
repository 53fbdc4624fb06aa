"""``python server.py status``: a running deployment at a terminal, read from its Redis.

Prints each process (state, address, rooms, connections, deliveries per
second, lag) and the busiest rooms, as the admin page shows them (the same
records and the same lag: bus/redis/status.py), or ``--json``. Exit status:
0 when every process is ready, 1 when one is not (or none reports), 2 when
Redis cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Sequence

from bus.backend import BusUnavailable
from bus.redis.client import Health, Redis, Topology
from bus.redis.keys import PREFIX_PATTERN, Keys
from bus.redis.status import ClusterReader
from config.logging import configure_logging
from telemetry.status import TOP_ROOMS, cluster_json

COLUMNS = ("process", "state", "address", "rooms", "conns", "deliv/s", "lag", "behind", "pending")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="server.py status",
        description="The processes of a running deployment (readiness, load, lag) and its busiest rooms, "
        "read from its Redis. Exit status: 0 all ready, 1 a process not ready or none, 2 Redis unreachable.",
    )
    env_url = os.environ.get("CHAT_REDIS_URL") or os.environ.get("REDIS_URL")
    parser.add_argument(
        "--redis-url", default=env_url, help="the deployment's Redis (default: CHAT_REDIS_URL or REDIS_URL)"
    )
    parser.add_argument("--redis-prefix", default=os.environ.get("CHAT_REDIS_PREFIX", "chat"), help="key prefix")
    parser.add_argument("--redis-cluster", action="store_true", help="the URL names one node of a Redis Cluster")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds for each Redis command (default 2)")
    parser.add_argument("--rooms", type=int, default=TOP_ROOMS, help=f"busiest rooms shown (default {TOP_ROOMS})")
    parser.add_argument("--json", action="store_true", help="print the admin page's JSON instead of tables")
    return parser


async def read(url: str, prefix: str, cluster: bool, timeout: float, top: int) -> dict[str, Any]:
    topology = Topology(url, cluster=cluster, timeout=timeout, client_name="status")
    redis = Redis(topology, Health())
    try:
        await topology.refresh()
        reader = ClusterReader(redis, Keys(prefix))
        views = await reader.processes()
        return cluster_json("redis", views, await reader.rooms(views, top))
    finally:
        await topology.aclose()


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def render(view: dict[str, Any]) -> str:
    rows = [list(COLUMNS)]
    for p in view["processes"]:
        lag = p["lag"]
        rows.append(
            [
                p["node"],
                p["state"] + (f" ({p['reason']})" if p["reason"] and p["state"] != "ready" else ""),
                _cell(p["address"]),
                _cell(p["rooms"]),
                _cell(p["connections"]),
                _cell(p["delivered_per_second"]),
                f"{lag['seconds']:.1f}s",
                str(lag["behind"]) + ("+" if lag["behind"] and lag["rooms_checked"] < lag["rooms_held"] else ""),
                str(lag["pending"]),
            ]
        )
    totals = view["totals"]
    lines = [
        table(rows),
        f"\n{totals['ready']} of {len(view['processes'])} processes ready, {totals['connections']} connections, "
        f"{totals['delivered_per_second']} deliveries/s, most lag {totals['lag_seconds']:.1f}s",
    ]
    if view["rooms"]:
        rooms = [["room", "users", "conns", "last message"]]
        for room in view["rooms"]:
            age = room["last_message_age"]
            rooms.append(
                [room["room"], str(room["users"]), str(room["connections"]), "-" if age is None else f"{age}s ago"]
            )
        lines += ["\nbusiest rooms:", table(rooms)]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    configure_logging("status", "console", sys.stderr, "error")  # stdout is the answer alone
    if not args.redis_url:
        print("server.py status: needs --redis-url (or CHAT_REDIS_URL): the deployment's Redis", file=sys.stderr)
        return 2
    if not PREFIX_PATTERN.fullmatch(args.redis_prefix) or not 1 <= args.rooms <= 100 or args.timeout <= 0:
        print("server.py status: --redis-prefix, --rooms (1-100) or --timeout is out of range", file=sys.stderr)
        return 2
    try:
        view = asyncio.run(read(args.redis_url, args.redis_prefix, args.redis_cluster, args.timeout, args.rooms))
    except (BusUnavailable, OSError) as exc:
        print(f"server.py status: cannot read Redis: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(view, indent=2) if args.json else render(view))
    processes = view["processes"]
    return 0 if processes and all(p["state"] == "ready" for p in processes) else 1
