"""Write tests/data/traffic.log: one real server.py run's stdout, driven by tests/traffic.py.

Run once and commit the result; the report tests read the frozen file, so
they do not depend on timing. Re-run only when the log format changes on
purpose, then update the timestamps the report tests quote:

    .venv/bin/python -m tests.data.make_traffic_log
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tests.traffic import drive_traffic, traffic_server

OUT = Path(__file__).with_name("traffic.log")


async def record() -> list[str]:
    with tempfile.TemporaryDirectory() as log_dir:
        server = await traffic_server(Path(log_dir)).start()
        try:
            staying = await drive_traffic(server.port)
        finally:
            status = await server.stop()
        if status != 0 or server.stderr():
            raise SystemExit(f"server exited {status}: {server.stderr().decode()}")
        del staying  # kept open until SIGTERM so that they close with 1001
        return server.lines()


def main() -> None:
    lines = asyncio.run(record())
    OUT.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} lines to {OUT}")


if __name__ == "__main__":
    main()
