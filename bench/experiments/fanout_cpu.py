"""CPU per delivery of the fan-out alone, beside the floor of one ``socket.send`` per recipient.

A server runs in this process on the in-process bus; ../shared/bench/loadgen.mjs
holds ``--clients`` idle WebSocket connections in one room (it reads and
drops what it gets). Then messages are handed to ``RoomBus._fan_out`` in
paced bursts, and this thread's CPU time over them is divided by the
deliveries; the same for a bare loop of ``socket.send`` of the same frames to
the same sockets (what no fan-out can go below). From the project root:

    flock /tmp/bench.lock .venv/bin/python bench/experiments/fanout_cpu.py [--clients 10] [--messages 20000]

Prints one line per round: µs per delivery of each, and their difference
(the Python a delivery costs above its system call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bus.message import Message  # noqa: E402
from config.cli import load_settings  # noqa: E402
from handlers.websocket.writer import text_frame  # noqa: E402
from runtime.chat_server import ChatServer  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench"
BURST = 200  # messages per burst: the receivers keep up, the sockets' buffers never fill


async def held(server: ChatServer, room: str, clients: int, deadline: float) -> list:
    while time.monotonic() < deadline:
        state = server.bus._rooms.get(room)
        if state is not None and len(state.seats) >= clients and all(s.live for s in state.seats.values()):
            return list(state.seats)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{clients} clients did not join {room}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings(["--port", "0", "--rate-limit", "0", "--client-rate-limit", "0"])
    server = ChatServer(settings)
    await server.start()
    loadgen = await asyncio.create_subprocess_exec(
        "node", "loadgen.mjs", "--url-template", f"ws://127.0.0.1:{server.port}/ws/chat/{{room}}/",
        "--connections-only", str(args.clients), "--rooms", "1", "--duration", "600",
        cwd=SHARED, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        members = await held(server, "bench0", args.clients, time.monotonic() + 30)
        sockets = [m.ws_connection.stream.socket for m in members]
        text = "x" * 100
        seq = 0
        for round_ in range(args.rounds):
            fan, floor = 0.0, 0.0
            for _ in range(args.messages // BURST):
                batch = []
                for _ in range(BURST):
                    seq += 1
                    batch.append(Message(f"{1_700_000_000_000 + seq}-0", "bench0", "bench", text))
                started = time.thread_time()
                for message in batch:
                    server.bus._fan_out([message])
                fan += time.thread_time() - started
                await asyncio.sleep(0.02)
                frames = [text_frame(m.frame()) for m in batch]
                started = time.thread_time()
                for frame in frames:
                    for sock in sockets:
                        sock.send(frame)
                floor += time.thread_time() - started
                await asyncio.sleep(0.02)
            deliveries = args.messages * args.clients
            a, b = fan / deliveries * 1e6, floor / deliveries * 1e6
            print(f"round {round_ + 1}: fan-out {a:5.2f} µs/delivery  send floor {b:5.2f}  above floor {a - b:5.2f}")
    finally:
        loadgen.terminate()
        await asyncio.wait_for(loadgen.wait(), 5)
        await server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main())
