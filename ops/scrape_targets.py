"""The launcher's Prometheus targets: a ``file_sd`` file naming each chat process's /metrics address.

Prometheus scrapes every process on its own (README, "Metrics"); with
``file_sd_configs`` pointing at this file (deploy/prometheus.yml) it follows
the launcher's ports without an edit. The file is replaced atomically, since
Prometheus watches it and may read it at any moment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

TARGETS = "prometheus-targets.json"


def targets(processes: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> list[dict[str, object]]:
    """One target group per process, labelled ``process`` with its node id.

    Not ``node``: the lag metrics have a label of that name, and a target
    label would push theirs aside (to ``exported_node``).
    """
    return [{"targets": [f"{host}:{port}"], "labels": {"process": node}} for node, port in processes]


def write_targets(path: Path, processes: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(targets(processes, host), indent=2) + "\n")
    os.chmod(partial, 0o644)  # a Prometheus running as its own user reads it
    partial.replace(path)
    return path
