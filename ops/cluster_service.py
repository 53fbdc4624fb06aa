"""What the launcher's parts (ops/cluster.py) share: finding a service's binary, starting it in a group of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from ops.process_runner import Process
from ops.users import RunAs

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0


class ClusterError(RuntimeError):
    """A part of the cluster could not be started; the message says which."""


def find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ClusterError(f"{name} not found: install Debian's {package} package (apt-get install {package})")
    return found


def service(name: str, argv: list[str], env: dict[str, str], log_path: Path, run_as: RunAs | None) -> Process:
    """A child in a process group of its own, so that a stop reaches all of it."""
    ids = (run_as.uid, run_as.gid) if run_as is not None else None
    return Process(name, argv, env, log_path=log_path, own_group=True, run_as=ids)
