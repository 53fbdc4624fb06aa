"""Start-up lifts the open-file limit so one process can hold 10,000 idle WebSockets."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ops.accept import connection_cap

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import resource
from ops.accept import raise_descriptor_limit
print(raise_descriptor_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


SOFT, HARD = 256, 1024  # a soft limit below the hard one, whatever this machine's limits are


def _start_with_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))  # lowering the hard limit needs no privilege


def test_a_low_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = HARD
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        preexec_fn=_start_with_limits,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    in_force, soft, now_hard = map(int, result.stdout.split())
    assert (in_force, soft, now_hard) == (hard, hard, hard)


@pytest.mark.parametrize(
    ("max_connections", "descriptors", "cap"),
    [
        (10_000, 20_000, 10_000),  # this machine: the setting bounds it
        (10_000, 1_024, 896),  # a distribution's default soft limit, had it not been raised: an eighth kept
        (10_000, 100, 68),  # at least 32 kept for Redis, logs, pages
        (10_000, 10, 1),
    ],
)
def test_the_websocket_cap_keeps_descriptors_for_everything_else(
    max_connections: int, descriptors: int, cap: int
) -> None:
    assert connection_cap(max_connections, descriptors) == cap
