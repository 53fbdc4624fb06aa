"""The process runner's health probe answers False, never raises, while a process starts."""

import asyncio

from ops.process_runner import http_ok_async


def test_a_health_probe_that_meets_a_closed_connection_answers_false() -> None:
    # A starting server can accept a connection and close it unanswered; the
    # probe must say "not healthy yet", not end the wait with an exception.
    async def probe() -> bool:
        async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await asyncio.wait_for(http_ok_async(f"http://127.0.0.1:{port}/healthz"), 5)

    assert asyncio.run(probe()) is False
