"""Real Prometheus scraping the launcher's cluster with deploy/'s files (README, "Metrics").

- promtool checks deploy/'s config and rules and runs their unit tests
  (deploy/alerts_test.yml: each alert fires and resolves on synthetic series);
- Prometheus scrapes a 3-process ``server.py cluster`` found through the
  launcher's file_sd targets file: every query of deploy/grafana/dashboard.json
  returns data;
- one process stopped (SIGSTOP) under traffic makes ChatReaderLagging fire
  for it, with the shipped expression and threshold; the test shortens only
  its ``for:`` (1m -> 2s); SIGCONT resolves it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ops.cluster import Cluster, free_port
from tests.client import ChatClient
from tests.conftest import SECRET
from tests.prometheus import DEPLOY, PrometheusServer, binary

LAG_FOR = "2s"  # the shipped rule waits 1m: too long for a test
INTERVAL = "0.5"  # --metrics-interval of the cluster's processes


def promtool(*args: str) -> str:
    result = subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_config_and_rules_and_their_unit_tests_pass() -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Cluster]:
    """``server.py cluster``'s deployment, 3 processes; the presence timeout outlasts the test's pause."""
    extra = ["--metrics-interval", INTERVAL, "--rate-limit", "0", "--presence-timeout", "120"]
    (tmp_path / "cluster").mkdir()
    cluster = Cluster(3, free_port(), tmp_path / "cluster", cookie_secret=SECRET, extra_args=extra)
    cluster.start()
    yield cluster
    for node in cluster.nodes:  # a stopped process would not stop
        node.service.resume()
    cluster.stop()


@pytest.fixture
def prometheus(tmp_path: Path, launched: Cluster) -> Iterator[PrometheusServer]:
    assert launched.targets_file is not None
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = PrometheusServer(directory, launched.targets_file, {"ChatReaderLagging": LAG_FOR}).start()
    yield server
    server.stop()


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` (run in a thread: it blocks on HTTP) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.25)  # polling, bounded by the deadline


async def send_forever(sender: ChatClient, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        await sender.say(f"m{sent}")
        sent += 1
        await asyncio.sleep(0.05)  # the traffic's pace: 20 messages a second
    return sent


def answered(prometheus: PrometheusServer, expr: str) -> bool:
    """The query returns at least one sample that is a number."""
    return any(not math.isnan(float(sample["value"][1])) for sample in prometheus.query(expr))


@pytest.mark.gen_test(timeout=110)
async def test_prometheus_scrapes_the_cluster_every_panel_has_data_and_a_stopped_reader_alerts(
    launched: Cluster, prometheus: PrometheusServer
) -> None:
    assert await until(lambda: len(prometheus.query('up{job="chat"} == 1')) == 3, 20, "3 targets up")
    # Joins and messages after a first scrape of each process: rates see them.
    ports = [node.port for node in launched.nodes]
    clients = [await ChatClient.connect(port, "load", user=f"u{n}") for n, port in enumerate(ports)]
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(send_forever(clients[0], stop))
    try:
        # A rate() needs two scrapes of a series with traffic between them:
        # each query is asked until it has a number (a quantile of nothing is NaN).
        for expr in dashboard_queries():
            await until(functools.partial(answered, prometheus, expr), 15, f"data for {expr}")
        every_node = {"node-1", "node-2", "node-3"}
        await until(
            lambda: {s["metric"]["node"] for s in prometheus.query("chat_consumer_lag_seconds")} == every_node,
            10,
            "every process's lag seen",
        )
        assert prometheus.firing("ChatReaderLagging") == []

        paused = launched.nodes[2].service
        paused.pause()  # SIGSTOP
        stopped_at = time.monotonic()
        try:
            [alert] = await until(lambda: prometheus.firing("ChatReaderLagging"), 40, "the lag alert fires")
            fired_after = time.monotonic() - stopped_at
        finally:
            paused.resume()  # SIGCONT
        assert alert["node"] == "node-3" and alert["severity"] == "page", alert
        assert 10 <= fired_after <= 10 + 2 + 8, fired_after  # threshold 10 s, for 2s, then sampling and scrapes
        await until(lambda: prometheus.firing("ChatReaderLagging") == [], 20, "the lag alert resolves")
    finally:
        stop.set()
        sent = await traffic
    assert sent > 100
    # The resumed process caught up: its member got every message, in order.
    received = await clients[2].messages(sent, timeout=20)
    assert [frame["message"] for frame in received] == [f"m{n}" for n in range(sent)]
