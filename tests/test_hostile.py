"""The hostile-client audit (README, "Threat model"): each finding, tried again at the audit's scale (in seconds).

Real server.py processes where the finding is about the process (descriptors,
stdout, logs), real nginx and Redis through the launcher where it is about
the deployment; the in-process server of conftest elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.web import create_signed_value

from bus.memory import MemoryBackend
from bus.message import Draft
from config.settings import SettingsError, settings_from
from handlers.identity import USER_COOKIE
from ops.cluster import Cluster
from runtime.chat_server import ChatServer
from tests.client import ChatClient
from tests.conftest import SECRET, base_settings
from tests.helpers import eventually
from tests.processes import ROOT, StartRaw
from tests.services import RedisServer

Frame = dict[str, Any]


# ---- a server.py process with a say in its stdout and its limits ---------------------


def log_events(path: Path, name: str) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


# ---- finding 3: out of file descriptors ----------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_out_of_descriptors_the_accept_loop_neither_spins_nor_floods_and_healthz_answers(
    tmp_path: Path, start_raw: StartRaw
) -> None:
    """The audit: nofile 256, 300 connects: 100% CPU, 46,232 log lines in 5 s, /healthz timing out."""
    log_path = tmp_path / "server.log"
    # No per-address cap: as when the connections come from many addresses.
    server = await start_raw(log_path, "--header-timeout", "2", "--max-http-connections-per-client", "0", nofile=256)
    idle: list[socket.socket] = []
    try:
        for _ in range(300):  # connect and say nothing: each holds a descriptor until the header timeout
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        cpu_before = server.cpu_seconds()
        await asyncio.sleep(1.5)  # measuring CPU over a span while descriptors are exhausted
        assert server.cpu_seconds() - cpu_before < 0.5, "the accept loop spins"
        # Idle connections are cut at the header timeout, and then /healthz is answered.
        deadline = time.monotonic() + 15
        while not await server.healthy(2.0):
            assert time.monotonic() < deadline, "/healthz never answered"
    finally:
        for sock in idle:
            sock.close()
    lines = log_path.read_text(errors="replace").splitlines()
    assert len(lines) < 100, f"{len(lines)} log lines"
    assert log_events(log_path, "accept.paused"), "the pause was not logged"
    assert server.stop() == 0


@pytest.mark.gen_test(timeout=60)
async def test_websockets_stop_short_of_the_descriptor_limit_so_healthz_keeps_answering(
    tmp_path: Path, start_raw: StartRaw
) -> None:
    server = await start_raw(
        tmp_path / "server.log", "--max-connections-per-client", "1000", "--join-rate", "0", nofile=256
    )
    opened: list[ChatClient] = []
    statuses: list[int] = []
    for _ in range(300):
        try:
            opened.append(await ChatClient.connect(server.port, "fd", join=False))
            statuses.append(101)
        except HTTPClientError as refused:
            statuses.append(refused.code)
    assert 150 <= statuses.count(101) <= 224 and set(statuses) == {101, 503}
    assert await server.healthy(2.0)
    for client in opened:
        client.close()
    assert server.stop() == 0


# ---- finding 4: nobody reads stdout --------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_a_stdout_nobody_reads_or_that_is_gone_never_stops_serving_and_sigterm_exits_0(
    start_raw: StartRaw,
) -> None:
    """The audit: frozen after ~64 KiB of log lines; BrokenPipeError once the reader left; SIGTERM exit 1."""
    read_end, write_end = os.pipe()
    server = await start_raw(write_end)
    os.close(write_end)
    http = AsyncHTTPClient()
    for _ in range(1500):  # ~1,500 http.request lines, over 200 KiB: three pipes' worth, unread
        response = await http.fetch(f"{server.url}/healthz", request_timeout=5)
        assert response.code == 200
    client = await ChatClient.connect(server.port, "pipe")
    await client.say("while nobody reads the log")
    assert (await client.messages(1))[0]["message"] == "while nobody reads the log"
    os.close(read_end)  # the reader is gone: every write is EPIPE from now on
    for _ in range(200):
        response = await http.fetch(f"{server.url}/healthz", request_timeout=5)
        assert response.code == 200
    late = await ChatClient.connect(server.port, "pipe")
    assert late.ready is not None
    metrics = (await http.fetch(f"{server.url}/metrics", request_timeout=5)).body.decode()
    [dropped] = [float(line.split()[1]) for line in metrics.splitlines() if line.startswith("chat_log_lines_dropped ")]
    assert dropped > 0
    assert server.stop() == 0


# ---- finding 5: the in-process resend map ---------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_the_in_process_resend_map_keeps_ids_not_messages() -> None:
    """The audit: +140 MiB for 5,000 messages of 16 KB with client_id, whatever the retention."""
    backend = MemoryBackend(retention=10, resend_window=600)
    await backend.start(lambda messages: None)
    text = "\U0001f600" * 4096  # 16 KiB
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(5000):
            await backend.publish(Draft("room", "ann", text + str(k), f"c{k}"))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10 * 1024 * 1024, f"{grown / 2**20:.1f} MiB kept for 5,000 client ids"
    again = await backend.publish(Draft("room", "ann", text + "7", "c7"))  # a resend is still recognised
    assert again.duplicate and again.message.key.ms > 0
    await backend.close()


# ---- finding 8: since -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    "since",
    [f"{2**64}-0", f"0-{2**64}", "١٢٣-٠", "１２-３", "12-3 ", "+1-2", "1--2", "-", "1-", "0x1-0", "1" * 30 + "-0"],
)
async def test_a_since_that_is_not_an_ascii_64_bit_id_is_400_and_costs_the_bus_nothing(
    make_server: Any, since: str
) -> None:
    server = await make_server()
    with pytest.raises(HTTPClientError) as refused:
        await ChatClient.connect(server.port, "ids", since=since)
    assert refused.value.code == 400
    metrics = (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{server.port}/metrics")).body.decode()
    assert "chat_bus_reconnects_total 0.0" in metrics
    fine = await ChatClient.connect(server.port, "ids", since=f"{2**64 - 1}-0")
    assert fine.ready is not None


# ---- finding 9: the rate limit across connections, every frame charged ------------------


@pytest.mark.gen_test(timeout=60)
async def test_reconnecting_buys_no_fresh_burst(make_server: Any) -> None:
    """The audit: reconnecting for a fresh burst gave 803 accepted messages/s from one client."""
    server = await make_server(rate_limit=20, rate_burst=40, client_rate_limit=20, client_rate_burst=40)
    watcher = await ChatClient.connect(server.port, "burst", user="watcher")
    started = time.monotonic()
    accepted = 0
    for round_ in range(10):  # ten guests from one address, each with a burst's worth
        guest = await ChatClient.connect(server.port, "burst")
        for k in range(40):
            await guest.say(f"{round_}-{k}", client_id=f"{round_}-{k}")
        answers = 0
        while answers < 40:
            frame = await guest.recv()
            if frame["type"] == "ack":
                accepted += 1
                answers += 1
            elif frame["type"] == "error":
                assert frame["error"] == "rate_limited"
                answers += 1
        guest.close()
    elapsed = time.monotonic() - started
    assert accepted <= 40 + 20 * elapsed + 5, (accepted, elapsed)  # the address's bucket, not 10 x 40
    await watcher.messages(accepted, timeout=20)
    await watcher.nothing_for(0.2)


@pytest.mark.gen_test(timeout=60)
async def test_a_flood_of_bad_frames_is_cut_off_and_its_log_sampled(tmp_path: Path, start_raw: StartRaw) -> None:
    """The audit: 20,000 bad frames got 20,000 error frames and 20,000 log lines in 1.76 s."""
    log_path = tmp_path / "server.log"
    server = await start_raw(log_path)
    junk = await ChatClient.connect(server.port, "junk")
    for _ in range(20000):
        junk.send_raw("{not json")
    errors = 0
    with pytest.raises(ConnectionError):
        while True:
            frame = await junk.recv(timeout=10)
            errors += frame["type"] == "error"
    assert junk.conn.close_code == 1008
    assert errors <= 200, errors
    assert server.stop() == 0
    rejected = log_events(log_path, "message.rejected")
    assert 0 < len(rejected) <= 50, len(rejected)
    lines = log_path.read_text().splitlines()
    assert len(lines) < 100, f"{len(lines)} log lines"  # start, connect, sampled rejections, close, stop


@pytest.mark.gen_test(timeout=60)
async def test_a_sender_far_over_the_rate_is_answered_then_closed(make_server: Any) -> None:
    server = await make_server(rate_limit=5, rate_burst=10)
    watcher = await ChatClient.connect(server.port, "flood", user="watcher")
    flooder = await ChatClient.connect(server.port, "flood", user="flooder")
    for k in range(3000):
        await flooder.say(f"m{k}")
    limited = 0
    with pytest.raises(ConnectionError):
        while True:
            frame = await flooder.recv(timeout=10)
            limited += frame["type"] == "error" and frame["error"] == "rate_limited"
    assert flooder.conn.close_code == 1008
    assert 1000 <= limited < 3000 - 10  # each answered while the budget lasted, not all 3,000
    got = 0
    with pytest.raises(asyncio.TimeoutError):
        while True:
            await watcher.messages(1, timeout=1)
            got += 1
    assert 10 <= got < 20  # the burst, plus what the rate allowed meanwhile


# ---- finding 11: HTTP bodies and slow headers -----------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_large_bodies_and_slow_headers_are_cut_off(make_server: Any) -> None:
    """The audit: three 90 MiB POSTs took RSS from 111 to 589 MiB; slow headers were held for an hour."""
    server = await make_server(header_timeout=1.0)
    loop = asyncio.get_running_loop()
    big = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    big.setblocking(False)
    head = (
        f"POST /chat/name HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {90 * 2**20}\r\n\r\n"
    )
    await loop.sock_sendall(big, head.encode())
    answer = await asyncio.wait_for(loop.sock_recv(big, 4096), 5)
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), answer  # before any body
    big.close()

    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.setblocking(False)
    await loop.sock_sendall(slow, b"GET /chat/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    started = time.monotonic()
    closed = await asyncio.wait_for(loop.sock_recv(slow, 4096), 10)
    assert closed == b"" and time.monotonic() - started < 5
    slow.close()


# ---- finding 14: names ------------------------------------------------------------------


async def choose_name(port: int, name: str) -> HTTPResponse:
    http = AsyncHTTPClient()
    lobby = await http.fetch(f"http://127.0.0.1:{port}/chat/", request_timeout=5)
    cookies = [c.split(";")[0] for c in lobby.headers.get_list("Set-Cookie")]
    token = next(c.split("=", 1)[1] for c in cookies if c.startswith("_xsrf="))
    return await http.fetch(
        f"http://127.0.0.1:{port}/chat/name",
        method="POST",
        raise_error=False,
        follow_redirects=False,
        headers={"Cookie": "; ".join(cookies)},
        body=f"_xsrf={quote(token)}&name={quote(name)}",
        request_timeout=5,
    )


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("name", ["\u3164", "\u2800\u2800", "a" + "\u0301" * 31, "\u200b", "x\u3164y", "\u115f"])
async def test_names_that_show_nothing_or_stack_marks_are_refused(make_server: Any, name: str) -> None:
    server = await make_server()
    assert (await choose_name(server.port, name)).code == 400


@pytest.mark.gen_test(timeout=30)
async def test_names_are_nfkc_normalised_and_lookalikes_never_show_as_another_member(make_server: Any) -> None:
    server = await make_server()
    response = await choose_name(server.port, "ａｄｍｉｎ")  # full-width: it is "admin"
    assert response.code == 302
    cookie = next(c for c in response.headers.get_list("Set-Cookie") if c.startswith(USER_COOKIE))
    real = await ChatClient.connect(server.port, "names", headers={"Cookie": cookie.split(";")[0]})
    fake = await ChatClient.connect(server.port, "names", user="\u0430dmin")  # Cyrillic а
    assert real.ready is not None and real.ready["user"] == "admin"
    assert fake.ready is not None and fake.ready["user"].startswith("\u0430dmin#")
    members = [m["user"] for m in (await fake.recv_type("presence"))["members"]]
    assert len(members) == len(set(members)) == 2 and "admin" in members
    await fake.say("hi")
    assert (await real.messages(1))[0]["user"] != "admin"


# ---- Low: invisible characters in messages, cookies, headers, hosts ----------------------


@pytest.mark.gen_test(timeout=30)
async def test_control_bidi_and_zero_width_characters_are_stripped_from_messages(make_server: Any) -> None:
    server = await make_server()
    client = await ChatClient.connect(server.port, "clean")
    await client.say("a\u202eb\u200bc\x01d\u2066e\u2069\nf\u200dg")
    assert (await client.messages(1))[0]["message"] == "abcde\nf\u200dg"  # the joiner stays (emoji need it)
    client.send({"message": "\u202e\u200b\x01"})
    assert (await client.recv_type("error"))["error"] == "bad_request"


@pytest.mark.gen_test(timeout=30)
async def test_pages_send_a_strict_csp_and_flagged_cookies_and_foreign_hosts_get_421(make_server: Any) -> None:
    server = await make_server()
    http = AsyncHTTPClient()
    page = await http.fetch(f"http://127.0.0.1:{server.port}/chat/", request_timeout=5)
    csp = page.headers["Content-Security-Policy"]
    assert "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp and "ws:" not in csp
    xsrf = next(c for c in page.headers.get_list("Set-Cookie") if c.startswith("_xsrf="))
    assert "HttpOnly" in xsrf and "SameSite=Strict" in xsrf and "Secure" not in xsrf  # plain http here
    rebound = await http.fetch(
        f"http://127.0.0.1:{server.port}/chat/", headers={"Host": "evil.example"}, raise_error=False, request_timeout=5
    )
    assert rebound.code == 421  # DNS rebinding: a foreign name pointed at our loopback address
    for host in ("localhost", f"localhost:{server.port}", "127.0.0.1"):
        assert (
            await http.fetch(f"http://127.0.0.1:{server.port}/chat/", headers={"Host": host}, request_timeout=5)
        ).code == 200


@pytest.mark.gen_test(timeout=30)
async def test_over_https_every_cookie_of_a_page_is_secure(make_server: Any) -> None:
    server = await make_server(behind_proxy=True)  # the TLS terminator says https
    page = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{server.port}/chat/", headers={"X-Forwarded-Proto": "https"}, request_timeout=5
    )
    cookies = page.headers.get_list("Set-Cookie")
    assert {c.split("=", 1)[0] for c in cookies} == {"_xsrf", USER_COOKIE}
    assert all("Secure" in cookie for cookie in cookies), cookies


@pytest.mark.gen_test(timeout=30)
async def test_the_name_cookie_is_accepted_for_as_long_as_it_lives(make_server: Any) -> None:
    """It lives 365 days; it used to be checked with Tornado's 31-day maximum."""
    server = await make_server()
    signed_40_days_ago = create_signed_value(
        SECRET, USER_COOKIE, "ann", clock=lambda: time.time() - 40 * 86400
    ).decode()
    client = await ChatClient.connect(server.port, "old", headers={"Cookie": f"{USER_COOKIE}={signed_40_days_ago}"})
    assert client.ready is not None and client.ready["user"] == "ann"


def test_the_cookie_secret_is_never_in_a_repr_nor_taken_from_argv_nor_short() -> None:
    assert SECRET not in repr(base_settings())
    with pytest.raises(SettingsError, match="command line"):
        settings_from({"cookie_secret": "s" * 40}, {})
    with pytest.raises(SettingsError, match="at least 32 bytes") as short:
        settings_from({}, {"CHAT_COOKIE_SECRET": "too-short"})
    assert "too-short" not in str(short.value)
    assert settings_from({}, {"CHAT_COOKIE_SECRET": "s" * 32}).cookie_secret == "s" * 32
    generated = settings_from({}, {})
    assert generated.cookie_secret_generated and len(generated.cookie_secret) >= 32


# ---- findings 12 and 13: the deployment ---------------------------------------------------


def owner(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


@pytest.mark.gen_test(timeout=60)
async def test_the_launcher_runs_services_unprivileged_and_redis_needs_a_password(cluster: Cluster) -> None:
    assert cluster.redis is not None and cluster.redis.process is not None and cluster.nginx is not None
    assert cluster.nginx.process is not None and cluster.redis_url is not None
    password = cluster.redis_password
    if os.geteuid() == 0:
        assert owner(cluster.redis.process.pid) != 0
        workers = children(cluster.nginx.process.pid)
        assert workers and all(owner(pid) != 0 for pid in workers)
        assert cluster.run_as is not None
        for node in cluster.nodes:  # started as that user, or dropped to it once listening
            assert node.service.process is not None
            assert owner(node.service.process.pid) == cluster.run_as.uid
    port = int(cluster.redis_url.rsplit(":", 1)[1].split("/")[0])
    with redis.Redis(port=port, socket_timeout=5) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.flushall()
    with redis.Redis(port=port, password=password, socket_timeout=5) as client:
        assert client.ping()
    for pid in os.listdir("/proc"):  # never on any command line
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # noqa: ASYNC240 (a few bytes from /proc)
                assert password.encode() not in cmdline
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue


@pytest.mark.gen_test(timeout=60)
async def test_nginx_overwrites_client_forwarding_headers_and_hides_metrics(cluster: Cluster) -> None:
    """The audit: a client-set X-Real-Ip was logged as the client; X-Scheme flipped the Secure flag."""
    http = AsyncHTTPClient()
    spoofed = {"X-Real-Ip": "6.6.6.6", "X-Forwarded-For": "6.6.6.6", "X-Scheme": "https", "X-Forwarded-Proto": "https"}
    page = await http.fetch(f"http://127.0.0.1:{cluster.port}/chat/", headers=spoofed, request_timeout=5)
    assert all("Secure" not in c for c in page.headers.get_list("Set-Cookie"))
    assert "nginx/" not in page.headers.get("Server", "")  # server_tokens off
    client = await ChatClient.connect(cluster.port, "spoof", headers=spoofed)
    assert client.ready is not None
    hidden = await http.fetch(f"http://127.0.0.1:{cluster.port}/metrics", raise_error=False, request_timeout=5)
    assert hidden.code == 404

    def clients() -> set[str | None]:
        logged = []
        for node in cluster.nodes:
            assert node.service.log_path is not None
            lines = node.service.log_path.read_text().splitlines()
            logged += [json.loads(line) for line in lines if line.startswith("{")]
        return {e.get("client") for e in logged if e.get("event") in ("http.request", "ws.connect")}

    async def connect_logged() -> bool:  # the processes write their logs on their own time
        return "127.0.0.1" in clients()

    await eventually(connect_logged, 5, "the connection's client address in the logs")
    assert "6.6.6.6" not in clients()


@pytest.mark.gen_test(timeout=60)
async def test_nginx_limits_websockets_per_address_across_processes(cluster: Cluster) -> None:
    """Each process allows 100 per address; nginx counts them over both, so 100 in all."""
    opened: list[ChatClient] = []
    for _ in range(100):
        opened.append(await ChatClient.connect(cluster.port, "many", join=False))
    with pytest.raises(HTTPClientError) as refused:
        await ChatClient.connect(cluster.port, "many", join=False)
    assert refused.value.code == 429
    for client in opened:
        client.close()


# ---- finding 6: a full Redis ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_full_redis_refuses_new_messages_with_unavailable_and_evicts_none(tmp_path: Path, io_loop: Any) -> None:
    """config/redis.conf's noeviction: once Redis is at maxmemory, a write fails, nothing is evicted."""
    policy = [
        line.split()[1]
        for line in (ROOT / "config" / "redis.conf").read_text().splitlines()
        if line.startswith("maxmemory-policy")
    ]
    assert policy == ["noeviction"]
    full = RedisServer(tmp_path / "redis", ["--maxmemory", "4mb", "--maxmemory-policy", policy[0]])
    full.start()
    # --history-bytes 0: the room alone may fill Redis (by default it would keep 1 MiB of it)
    server = ChatServer(base_settings(redis_url=full.url(), rate_limit=0, history=1000, history_bytes=0))
    try:
        await server.start()
        sender = await ChatClient.connect(server.port, "full")
        acked: list[str] = []
        refused = 0
        for k in range(600):  # 600 x 16 KiB is more than the 4 MB Redis may hold
            await sender.say(f"{k}" + "\U0001f600" * 4000, client_id=f"c{k}")
            frame = await next_answer(sender)
            if frame["type"] == "ack":
                acked.append(frame["id"])
            else:
                assert frame["error"] == "unavailable", frame
                refused += 1
                if refused >= 3:
                    break
        assert acked and refused >= 3, (len(acked), refused)
        late = await ChatClient.connect(server.port, "full")
        assert [f["id"] for f in late.history] == acked  # every accepted message is still there
    finally:
        await server.stop()
        full.stop()


async def next_answer(client: ChatClient) -> Frame:
    """The next ack or error, past notices and the messages themselves."""
    while True:
        frame = await client.recv()
        if frame["type"] in ("ack", "error"):
            return frame
