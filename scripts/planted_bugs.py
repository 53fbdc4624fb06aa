"""Plant each known bug in a scratch copy of the repository and check that its test catches it, fast.

    .venv/bin/python scripts/planted_bugs.py [WORD ...]   # only the bugs whose name holds a WORD

For each bug: the named tests must pass on the code as it is, fail with the
bug planted, and take under a second each (pytest's own timing of the call).
A bug whose code is no longer there says so ("cannot plant"): update the
table when the code moves. Exit status 0 when every bug was caught in time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_SECONDS = 1.0


@dataclass(frozen=True)
class Bug:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = [
    Bug(
        "the token bucket never refills",
        "handlers/rate_limit.py",
        "self._tokens + (now - self._stamp) * self._rate",
        "self._tokens",
        ("tests/unit/test_rate_limit.py::test_an_empty_bucket_refills_at_the_rate",),
    ),
    Bug(
        "the token bucket is not capped at the burst",
        "handlers/rate_limit.py",
        "self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)",
        "self._tokens = self._tokens + (now - self._stamp) * self._rate",
        ("tests/unit/test_rate_limit.py::test_refill_is_capped_at_the_burst",),
    ),
    Bug(
        "a slow client closed with 1000 instead of 1008",
        "handlers/room_socket.py",
        'self._close_by_server(CLOSE_POLICY, "too slow',
        'self._close_by_server(1000, "too slow',
        ("tests/test_protocol.py::test_a_client_that_stops_reading_is_dropped_with_1008_without_slowing_the_room",),
    ),
    Bug(
        "a frame with both typing and message treated as typing",
        "handlers/inbound.py",
        'if "message" not in body and body.get("typing") is True:',
        'if body.get("typing") is True:',
        ("tests/unit/test_inbound.py::test_a_valid_frame_becomes_a_request",),
    ),
    Bug(
        "the origin check ignores default ports",
        "handlers/socket_handshake.py",
        "return netloc if has_port else f\"{netloc}:{_DEFAULT_PORTS.get(scheme, '80')}\"",
        "return netloc",
        ("tests/unit/test_origin.py::test_same_host_with_default_ports_made_explicit",),
    ),
    Bug(
        "CSP, nosniff and Referrer-Policy headers removed",
        "handlers/pages.py",
        "    def set_default_headers(self) -> None:\n",
        "    def set_default_headers(self) -> None:\n        return\n",
        ("tests/test_pages.py::test_pages_carry_the_security_headers",),
    ),
    Bug(
        "a client_id's resend window never expires (in-process bus)",
        "bus/memory.py",
        "time.monotonic() + self._resend_window",
        "float('inf')",
        ("tests/unit/test_resend_window.py::test_a_client_id_is_remembered_for_the_resend_window_then_forgotten",),
    ),
    Bug(
        "a client_id's resend window never expires (Redis bus)",
        "bus/redis/publish.py",
        "self._resend_ms = int(options.resend_window * 1000)",
        "self._resend_ms = 10**12",
        ("tests/unit/test_resend_window.py::test_a_client_id_is_remembered_for_the_resend_window_then_forgotten",),
    ),
    Bug(
        "a per-address connection slot never given back",
        "handlers/limits.py",
        "        self._per_client[client] -= 1\n",
        "",
        (
            "tests/unit/test_connection_limits.py::test_a_released_slot_can_be_taken_again_by_the_same_address",
            "tests/test_limits.py::test_a_closed_connection_gives_its_slot_back",
        ),
    ),
    Bug(
        "a ping timeout compared the wrong way",
        "handlers/pings.py",
        "if self.timeout > 0 and not socket.pong_received():",
        "if self.timeout < 0 and not socket.pong_received():",
        (
            "tests/unit/test_pings.py::"
            "test_on_a_fake_clock_a_silent_socket_is_closed_just_after_its_timeout_and_an_answering_one_never",
        ),
    ),
]


def copy_tree(target: Path) -> None:
    """The tracked files as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[bool, dict[str, float]]:
    """Whether the tests passed, and each test case's call time."""
    report = tree / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--junitxml={report}", *tests],
        cwd=tree,
        capture_output=True,
        timeout=300,
    )
    times = {f"{case.get('name')}": float(case.get("time", "0")) for case in ElementTree.parse(report).iter("testcase")}
    return result.returncode == 0, times


def check(bug: Bug, scratch: Path) -> bool:
    tree = scratch / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    copy_tree(tree)
    passed, _ = run_tests(tree, bug.tests)
    if not passed:
        print(f"NOT CHECKED  {bug.name}: the tests fail even without the bug")
        return False
    source = tree / bug.path
    text = source.read_text()
    if text.count(bug.old) != 1:
        print(f"CANNOT PLANT {bug.name}: the code to change is no longer in {bug.path}")
        return False
    source.write_text(text.replace(bug.old, bug.new))
    passed, times = run_tests(tree, bug.tests)
    slowest = max(times.values(), default=0.0)
    caught = not passed and slowest < LIMIT_SECONDS
    verdict = "caught" if caught else ("MISSED" if passed else "caught, but SLOW")
    print(f"{verdict:12s} {bug.name}: {', '.join(bug.tests)} (slowest case {slowest:.2f} s)")
    return caught


def main() -> int:
    chosen = [bug for bug in BUGS if not sys.argv[1:] or any(word in bug.name for word in sys.argv[1:])]
    with tempfile.TemporaryDirectory(prefix="planted-") as scratch:
        results = [check(bug, Path(scratch)) for bug in chosen]
    print(f"{sum(results)} of {len(results)} planted bugs caught in under {LIMIT_SECONDS:.0f} s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
