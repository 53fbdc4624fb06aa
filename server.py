"""Room chat server: ``python server.py [flags]`` serves one process;
``python server.py report [...]`` summarises its logs (ops/report.py);
``python server.py cluster [...]`` runs N processes behind nginx (ops/cluster_cli.py);
``python server.py status [...]`` shows a running deployment's processes (ops/status_cli.py).

Start-up reads the settings once, sets up logging, builds the bus (Redis
streams when a Redis URL is set, else in-process), the Tornado application,
and serves until SIGTERM or SIGINT, then shuts down in order: stop accepting,
close every WebSocket with 1001, close the bus. The parts and their wiring
are in runtime/ (chat_server.py, app.py, process.py); this file dispatches.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Sequence, TextIO, cast

import structlog
import tornado
import uvloop

from bus.memory_store import StoreError
from config.cli import load_settings
from config.logging import configure_logging, stdout_writer
from config.settings import SettingsError
from handlers.websocket.guard import tornado_problems
from runtime.process import ListenError, serve

log = structlog.get_logger("chat.server")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        from ops.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["status"]:
        from ops.status_cli import main as status_main

        return status_main(argv[1:])
    if argv[:1] == ["cluster"]:
        from ops.cluster_cli import main as cluster_main

        return cluster_main(argv[1:])
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    if problems := tornado_problems():  # what handlers/websocket/ uses past Tornado's public API
        print(f"server.py: Tornado {tornado.version} lacks what the WebSocket code uses: {problems}", file=sys.stderr)
        return 2
    # Logging never holds up serving: lines go out from a thread, and are
    # dropped (and counted) when nobody reads stdout.
    writer = stdout_writer(settings.node_id)
    configure_logging(settings.node_id, settings.log_format, cast(TextIO, writer), settings.log_level)
    if settings.cookie_secret_generated:
        log.warning(
            "settings.cookie_secret_generated",
            detail="names reset at restart; set CHAT_COOKIE_SECRET, shared by every process",
        )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if settings.event_loop == "uvloop" else None) as runner:
            runner.run(serve(settings, writer))
    except (ListenError, StoreError) as exc:
        writer.drain(timeout=1.0)
        print(f"server.py: {exc}", file=sys.stderr)
        return 1
    writer.drain(timeout=1.0)  # the last lines, if anyone still reads them
    return 0


if __name__ == "__main__":
    sys.exit(main())
