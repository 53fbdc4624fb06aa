"""The launcher from a checkout under a directory only root can enter (a home, a ``mktemp -d``).

Run as root, the launcher's Redis and nginx workers run as an unprivileged
user, who cannot read such a checkout: it refuses at once, in one line that
says why and what to do, instead of waiting 15 s for a redis-server that
cannot read its configuration. Run as anyone else, everything runs as that
user and the same checkout works.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from ops.cluster import Cluster
from tests.helpers import free_port
from tests.processes import launcher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    """A copy of the checkout's files in a new ``mktemp -d`` (mode 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="private-"))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    checkout = parent / "chat"
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    yield checkout
    shutil.rmtree(parent, ignore_errors=True)


def test_the_launcher_from_a_private_checkout_refuses_at_once_as_root_or_works(private_checkout: Path) -> None:
    assert (private_checkout.parent.stat().st_mode & 0o777) == 0o700
    port = free_port()
    started = time.monotonic()
    with launcher(port, "--processes", "1", checkout=private_checkout, stderr=subprocess.PIPE) as running:
        if os.geteuid() == 0:
            out, err = running.communicate(timeout=30)
            assert running.returncode == 1 and out == "", out
            assert time.monotonic() - started < 10  # at once, not after a 15 s wait for Redis
            assert err.count("\n") == 1, err
            assert err.startswith("server.py cluster: user nobody cannot read this checkout (")
            assert f"{private_checkout.parent} is mode 0700" in err and "--user" in err
        else:
            assert running.stdout is not None
            assert running.stdout.readline().startswith(f"chat cluster: open http://127.0.0.1:{port}/chat/")
            running.send_signal(signal.SIGTERM)
            assert running.wait(30) == 0


def test_a_root_launcher_says_how_to_fix_a_virtualenv_its_user_cannot_read(tmp_path: Path) -> None:
    hidden = Path(tempfile.mkdtemp(prefix="venv-"))  # 0700: nobody cannot run what is inside
    try:
        python = hidden / "python3"
        python.symlink_to(sys.executable)
        cluster = Cluster(processes=1, port=free_port(), run_dir=tmp_path, python=str(python))
        cluster._drop_privileges()
        if os.geteuid() == 0:
            assert cluster.chat_run_as is None  # they start as root and drop to nobody once listening
            [warning] = [w for w in cluster.warnings if "cannot run" in w]
            assert f"nobody cannot run {python}" in warning and "chmod -R o+rX" in warning
            assert "python3 -m venv" in warning
        else:
            assert cluster.warnings == [] and cluster.run_as is None  # nobody to drop to
        cluster.stop()  # nothing was started; the work directory it may have made goes
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
