"""Run by tests/test_logging.py in a child process: logging set up as server.py does, then errors.

A child, because ``configure_logging`` sets the process's logging once and
for all, which the test process must not inherit. It serves a real
ChatServer with one extra handler that raises, fetches it, and reports an
exception through asyncio's own handler and through structlog, so stdout
shows how each of those loggers' lines come out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import structlog
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from config.logging import configure_logging
from config.settings import Settings
from runtime.chat_server import ChatServer

SECRET_LOCAL = "a local value that must not reach the log"


class BoomHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        held = SECRET_LOCAL  # noqa: F841 - a local that a traceback with locals would show
        raise RuntimeError("boom in a handler")


async def probe() -> None:
    settings = dataclasses.replace(Settings(), port=0, node_id="probe", cookie_secret="s")
    server = ChatServer(settings)
    server.app.add_handlers(r".*", [(r"/boom", BoomHandler)])
    await server.start()
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/boom", raise_error=False, request_timeout=5
    )
    assert response.code == 500
    asyncio.get_running_loop().call_exception_handler(
        {"message": "asyncio handler", "exception": ValueError("from asyncio")}
    )
    structlog.contextvars.bind_contextvars(conn="probe:1", room="r", user="u")
    try:
        raise KeyError("from structlog")
    except KeyError:
        structlog.get_logger("probe").exception("probe.failed")
    await server.stop()


if __name__ == "__main__":
    configure_logging("probe", sys.argv[1] if len(sys.argv) > 1 else "json")
    asyncio.run(probe())
