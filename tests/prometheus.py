"""A real Prometheus (Debian's ``prometheus`` package) for tests: deploy/'s files, fast intervals.

``PrometheusServer`` runs ``/usr/bin/prometheus`` on a free loopback port with
a data directory of its own, using deploy/prometheus.yml and deploy/alerts.yml
as shipped except for what a test cannot wait for: scrapes and rule
evaluations every second, the targets file it is given, and the ``for:`` of
the rules it names.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ops.process_runner import Process, ProcessError, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
START_TIMEOUT = 20.0


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        raise ProcessError(f"{name} not found: install Debian's prometheus package (scripts/system-deps.sh)")
    return found


def config_for_tests(directory: Path, targets_file: Path, rule_for: dict[str, str]) -> Path:
    """deploy/prometheus.yml and alerts.yml copied to ``directory``, with test intervals; the config's path."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="900ms", evaluation_interval="1s")
    [job] = config["scrape_configs"]
    job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in rule_for:
                rule["for"] = rule_for[rule["alert"]]
    (directory / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PrometheusServer:
    def __init__(self, directory: Path, targets_file: Path, rule_for: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.config = config_for_tests(directory, targets_file, rule_for or {})
        self.port = free_port()
        argv = [
            binary("prometheus"),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = Process("prometheus", argv, log_path=directory / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "PrometheusServer":
        self.process.start().wait_healthy(self._ready, START_TIMEOUT)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """One call of the HTTP API (``/api/v1/<path>``); its ``data``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def firing(self, alert: str) -> list[dict[str, str]]:
        """The labels of each firing alert of that name."""
        alerts = self.api("alerts")["alerts"]
        return [a["labels"] for a in alerts if a["labels"]["alertname"] == alert and a["state"] == "firing"]

    def stop(self) -> None:
        self.process.stop()
