"""The launcher's nginx (ops/cluster.py): config/nginx.conf filled in for this run, and its process."""

from __future__ import annotations

import os
import string
from pathlib import Path

from ops.cluster_service import ROOT, ClusterError, find_binary, service
from ops.process_runner import Process
from ops.users import RunAs

NGINX_TEMPLATE = ROOT / "config" / "nginx.conf"


def nginx_config(listen: str, upstream_ports: list[int], run_dir: Path, work_dir: Path, workers: RunAs | None) -> str:
    """config/nginx.conf in front of the chat processes on ``upstream_ports``, its workers run as ``workers``."""
    # max_fails=0: never mark a process down, try it again on the next
    # request. A process that is restarting refuses at once, and nginx
    # moves on to the next one (proxy_next_upstream); with the default
    # (down for 10 s) a rolling restart would leave nginx none to offer.
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in upstream_ports)
    # As root, the master keeps root to bind the port; its workers, which
    # talk to clients, run as the unprivileged user (the run directory lets them in).
    user_line = f"user {workers.name} {workers.group};" if workers is not None else ""
    # safe_substitute leaves nginx's own $variables alone; ours are ${braced}.
    text = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
        user_line=user_line,
        run_dir=run_dir,
        work_dir=work_dir,
        listen=listen,
        upstream_servers=servers,
        static_dir=ROOT / "static",
        mime_types=_mime_types(),
    )
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if "${" in body:
        raise ClusterError(f"{NGINX_TEMPLATE} has a ${{...}} value the launcher does not know")
    return text


def nginx_server(config: Path, run_dir: Path) -> Process:
    """nginx from ``config``, its paths relative to ``run_dir``, not yet started; its error log in the run dir."""
    argv = [find_binary("nginx", "nginx"), "-c", str(config), "-p", str(run_dir)]
    nginx = service("nginx", argv, dict(os.environ), run_dir / "nginx.log", None)
    nginx.own_log = run_dir / "nginx-error.log"
    return nginx


def _mime_types() -> str:
    for candidate in ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types"):
        if Path(candidate).exists():
            return candidate
    raise ClusterError("nginx's mime.types not found: is Debian's nginx package installed?")
