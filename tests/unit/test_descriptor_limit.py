"""Start-up lifts the open-file limit so one process can hold 10,000 idle WebSockets (issue 9, goal 4)."""

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


def _start_with_soft_limit(soft: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_low_soft_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise to")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        preexec_fn=lambda: _start_with_soft_limit(256),
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
