"""Running the server from the command line, as a person uses it.

``server.py`` says where to go when a person started it, answers a taken
port with one line and a non-zero status, and ``--help`` names the
subcommands, the defaults and the ``CHAT_*`` variables; ``make run`` keeps
the names people chose across a restart; the cluster launcher says where each
part logs, and when it has stopped. Real processes throughout; every wait has
a deadline.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ops.process_runner import Process, free_port, http_ok
from runtime.process import page_url
from tests.processes import launcher

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, str(ROOT / "server.py")]
# The cookie secret comes from the environment, never the command line (every local user can read one).
SECRET_ENV = {**os.environ, "CHAT_COOKIE_SECRET": "cli-test-secret-at-least-32-bytes-long"}
START_TIMEOUT = 30.0


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVER, *args], capture_output=True, text=True, timeout=30, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def start_server(name: str, argv: list[str], port: int, env: dict[str, str], log: Path) -> Process:
    """``argv`` in a process group of its own (make and the server under it), once /healthz answers."""
    process = Process(name, argv, env, log_path=log, own_group=True).start()
    return process.wait_healthy(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), START_TIMEOUT)


# ---- acceptance 6: a taken port, --help --------------------------------------------


def test_a_taken_port_is_one_line_naming_the_port_and_a_non_zero_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--port", str(port), "--log-format", "json", env=SECRET_ENV)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (
        f"server.py: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another server? choose a free one with --port or CHAT_PORT)\n"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_help_names_the_subcommands_the_defaults_and_the_environment_variables() -> None:
    result = run("--help")
    assert result.returncode == 0 and result.stderr == ""
    text = " ".join(result.stdout.split())  # argparse wraps lines where it likes
    for expected in (
        "server.py cluster",
        "server.py report",
        "(default: 127.0.0.1; env CHAT_HOST)",
        "(default: 8888; env CHAT_PORT)",
        "(default: 50; env CHAT_HISTORY)",
        "env CHAT_REDIS_URL or REDIS_URL",
        "The cookie secret has no flag: set CHAT_COOKIE_SECRET",
        "(default: 20; env CHAT_RATE_LIMIT)",
        "per second a user may send in a room, over all their connections to it",
    ):
        assert expected in text, expected


def test_version_says_which_server_and_what_it_runs_on() -> None:
    result = run("--version")
    assert result.returncode == 0 and re.fullmatch(
        r"room chat \d+\.\d+\.\d+ \(Python 3\.\d+\.\d+, Tornado \d[\d.]*\)\n", result.stdout
    )


def test_a_mistake_on_the_command_line_is_one_line_naming_the_flag() -> None:
    for argv, line in (
        (["--prot", "9000"], "server.py: unknown flag --prot (did you mean --port?); server.py --help lists them all"),
        (["--po", "9000"], "server.py: unknown flag --po (did you mean --port?); server.py --help lists them all"),
        (["--port"], "server.py: --port needs a value"),
        (["--log-format", "xml"], "server.py: --log-format must be 'json' or 'console', got 'xml'"),
        (
            ["--cookie-secret", "s" * 40],
            "server.py: --cookie-secret is not a flag: a command line is visible to every user of the machine; "
            "set CHAT_COOKIE_SECRET in the environment or cookie_secret in a config file",
        ),
    ):
        result = run(*argv, env=SECRET_ENV)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n"), argv


def test_without_an_access_log_a_static_file_writes_no_line_and_warnings_still_go_out(tmp_path: Path) -> None:
    port = free_port()
    argv = [*SERVER, "--port", str(port), "--log-format", "json", "--no-access-log", "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}  # no secret: a warning
    process = start_server("server.py", argv, port, env, tmp_path / "out.log")
    try:
        for path in ("/static/chat.css", "/chat/", "/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                assert response.status == 200
        assert process.stop() == 0
    finally:
        process.kill()
    events = [json.loads(line)["event"] for line in (tmp_path / "out.log").read_text().splitlines()]
    assert "http.request" not in events and "server.started" not in events  # info is below warning
    assert "settings.cookie_secret_generated" in events  # a warning


def test_the_subcommands_have_help_of_their_own_in_plain_text() -> None:
    for command, expected in (("cluster", "--processes"), ("report", "--by-minute")):
        result = run(command, "--help")
        assert result.returncode == 0 and expected in result.stdout, result.stdout
        assert "``" not in result.stdout  # no reST markup in what a person reads


# ---- the URL at start --------------------------------------------------------------


def read_until(fd: int, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> str:
    """What a terminal shows until ``pattern`` appears in it."""
    seen = ""
    deadline = time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"not seen within {timeout} s: {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def test_a_person_who_starts_the_server_is_told_which_url_to_open(tmp_path: Path) -> None:
    terminal, stderr_end = pty.openpty()  # stderr on a terminal, as when a person runs it
    argv = [*SERVER, "--port", "0", "--log-format", "json"]
    process = Process("server.py", argv, SECRET_ENV, log_path=tmp_path / "stdout.log", own_group=True)
    process.stderr = stderr_end
    process.start()
    os.close(stderr_end)
    try:
        shown = read_until(terminal, re.compile(r"open http://127\.0\.0\.1:(\d+)/chat/ \(Ctrl-C stops it\)"))
        port = int(re.findall(r"127\.0\.0\.1:(\d+)/chat/", shown)[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/chat/", timeout=5) as response:
            assert response.status == 200
        assert process.stop() == 0
    finally:
        process.kill()
        os.close(terminal)


def test_the_url_for_a_wildcard_or_ipv6_address_is_one_a_browser_can_open() -> None:
    assert page_url("0.0.0.0", 8888) == "http://127.0.0.1:8888/chat/"
    assert page_url("::1", 9000) == "http://[::1]:9000/chat/"
    assert page_url("chat.example", 80) == "http://chat.example:80/chat/"


# ---- acceptance 4: make run keeps names across a restart -----------------------------


class Visitor:
    """A browser's cookie jar over plain HTTP: the lobby's name form, then a room page."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def choose_name(self, name: str) -> None:
        self.opener.open(f"{self.base}/chat/", timeout=5).read()
        xsrf = next(cookie.value for cookie in self.jar if cookie.name == "_xsrf")
        body = urllib.parse.urlencode({"name": name, "_xsrf": xsrf}).encode()
        self.opener.open(f"{self.base}/chat/name", data=body, timeout=5).read()

    def name_on_room_page(self) -> str:
        page = self.opener.open(f"{self.base}/chat/general/", timeout=5).read().decode()
        found = re.search(r'id="user-name">([^<]*)<', page)
        assert found, page
        return found.group(1)


def start_make_run(run_dir: Path, port: int, log: Path) -> Process:
    # -o: the virtualenv is set up already (make test did it); this test is about the secret.
    command = ["make", "-s", "-o", ".venv/.run-deps", "run", f"RUN_DIR={run_dir}"]
    command.append(f"ARGS=--port {port} --log-format json")
    return start_server("make run", command, port, dict(os.environ), log)


def test_a_name_chosen_before_a_restart_of_make_run_is_still_the_name_after_it(tmp_path: Path) -> None:
    run_dir, port = tmp_path / "run", free_port()  # make run's run directory, here a temporary one
    output = tmp_path / "make-run.log"
    visitor = Visitor(port)
    first = start_make_run(run_dir, port, output)
    try:
        visitor.choose_name("Alice")
        assert visitor.name_on_room_page() == "Alice"
    finally:
        first.stop(signal.SIGINT)  # Ctrl-C, as a person stops it; make reports the signal
    second = start_make_run(run_dir, port, output)
    try:
        assert visitor.name_on_room_page() == "Alice"
        server_argv = Path(f"/proc/{second.pid}/cmdline").read_bytes()
    finally:
        second.stop(signal.SIGINT)

    secret_file = run_dir / "cookie-secret"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    printed = output.read_text()
    assert printed.count("made a cookie secret") == 1  # the first start only
    assert secret not in printed and secret.encode() not in server_argv  # never logged, never on argv


# ---- the launcher says where it logs, and that it stopped -------------------------------


def test_the_launcher_prints_each_log_file_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    with launcher(port, "--processes", "1", "--run-dir", str(tmp_path)) as running:
        assert running.stdout is not None
        lines = [running.stdout.readline() for _ in range(5)]  # the URL, the run dir, three logs
        assert lines[0].startswith(f"chat cluster: open http://127.0.0.1:{port}/chat/"), lines
        logs = dict(line.split()[0:3:2] for line in lines[2:])
        assert set(logs) == {"redis", "node-1", "nginx"}, lines
        for path in logs.values():
            assert Path(path).is_file() and Path(path).parent == tmp_path, path
        node = running.stdout.readline().split()  # then each process's own address and its /metrics
        assert node[0] == "node-1" and node[2] == "metrics" and node[3] == node[1] + "metrics", node
        with urllib.request.urlopen(node[3], timeout=5) as response:
            assert b"chat_connections" in response.read()
        prometheus = running.stdout.readline().split()  # then the Prometheus file_sd targets of them all
        assert prometheus[:3] == ["prometheus", "file_sd", "targets"], prometheus
        host_port = node[1].removeprefix("http://").rstrip("/")
        expected = [{"targets": [host_port], "labels": {"process": "node-1"}}]
        assert json.loads(Path(prometheus[3]).read_text()) == expected
        running.send_signal(signal.SIGTERM)
        rest = running.stdout.read()
        assert running.wait(30) == 0
        assert rest.splitlines()[-2:] == ["chat cluster: stopping", "chat cluster: stopped"], rest
