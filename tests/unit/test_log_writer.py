"""The log writer thread wakes once for a run of lines, not once a line (config/log_writer.py).

Every wake-up of the writer thread takes the GIL from the event loop; at one traffic line per
message that cost the server a tenth of its CPU (bench/RESULTS.md, "The log writer").
"""

from __future__ import annotations

import os
import threading
import time

from config.log_writer import NonBlockingLineWriter


def _reader(fd: int) -> tuple[threading.Thread, bytearray]:
    got = bytearray()

    def read() -> None:
        while chunk := os.read(fd, 1 << 16):
            got.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_lines_a_millisecond_apart_leave_in_a_few_writes_whole_and_in_order() -> None:
    read_end, write_end = os.pipe()
    reader, got = _reader(read_end)
    writer = NonBlockingLineWriter(write_end)
    lines = [f'{{"event": "message.accepted", "n": {n}}}\n' for n in range(200)]
    for line in lines:
        writer.write(line)
        time.sleep(0.001)  # paces the lines like live traffic; nothing waits on it
    assert writer.drain(timeout=5.0)
    os.close(write_end)
    reader.join(timeout=5.0)
    assert got.decode() == "".join(lines)
    assert writer.writes <= 20  # one write a line before: 200


def test_drain_writes_a_lone_line_at_once_and_a_quiet_writer_stays_drained() -> None:
    read_end, write_end = os.pipe()
    reader, got = _reader(read_end)
    writer = NonBlockingLineWriter(write_end)
    assert writer.drain(timeout=0.5)  # nothing queued
    writer.write("one\n")
    assert writer.drain(timeout=5.0)
    writer.write("two\n")
    assert writer.drain(timeout=5.0)
    os.close(write_end)
    reader.join(timeout=5.0)
    assert got == b"one\ntwo\n"
