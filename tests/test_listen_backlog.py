"""A burst of connections a busy process cannot accept yet is queued by the kernel, not dropped.

When a process dies, its pages reconnect through nginx to the others within a
second or two: thousands of connections arrive while the process taking them
is busy with the joins before. Connections beyond the listen backlog have
their SYNs dropped and come back 1 s and 3 s later, past nginx's 2 s connect
timeout (a 504 for the page). Needs ``net.core.somaxconn`` >= 4096 (the
kernel's default since 5.4), which caps any backlog.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())
BURST = 3000  # a storm's share for one process, above the former backlog of 1024


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_connections_waits_in_the_backlog_while_the_process_is_busy(make_server: Any) -> None:
    server = await make_server()
    assert SOMAXCONN >= 4096, "the kernel caps every backlog below what this test needs"
    opened: list[socket.socket] = []
    try:
        # The server shares this test's event loop: until the test awaits, the
        # process accepts nothing, as one busy with joins; every connection
        # must complete its TCP handshake in the kernel's queue meanwhile.
        for k in range(BURST):
            sock = socket.socket()
            opened.append(sock)
            sock.settimeout(0.5)  # a dropped SYN is retried after 1 s: this fails first
            try:
                sock.connect(("127.0.0.1", server.port))
            except OSError as exc:
                raise AssertionError(f"connection {k + 1} of {BURST} was not queued: {exc!r}") from None
    finally:
        for sock in opened:
            sock.close()
