"""The launcher run as root: nginx's workers, Redis and the chat processes under three different users.

nginx's workers face every client; Redis's password must be out of their
reach: in Redis's config (mode 0600, Redis's user) and in the chat
processes' environment (their user's alone), readable by neither of the others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ops.cluster import Cluster, ClusterError
from ops.process_runner import free_port
from ops.users import RunAs
from tests.test_hostile import children, owner


def test_nginx_redis_and_the_chat_run_as_three_users_and_the_password_is_out_of_nginxs_reach(cluster: Cluster) -> None:
    assert cluster.redis is not None and cluster.redis.process is not None
    assert cluster.nginx is not None and cluster.nginx.process is not None
    if os.geteuid() != 0:
        assert cluster.users is None  # a launcher that is not root runs everything as itself
        return
    redis_uid = owner(cluster.redis.process.pid)
    nginx_uids = {owner(pid) for pid in children(cluster.nginx.process.pid)}
    chat_pids = [node.service.process.pid for node in cluster.nodes if node.service.process is not None]
    chat_uids = {owner(pid) for pid in chat_pids}
    assert len(nginx_uids) == 1 and len(chat_uids) == 1
    uids = [redis_uid, *nginx_uids, *chat_uids]
    assert len(set(uids)) == 3 and 0 not in uids  # the audit: all three were uid 65534
    assert cluster.users is not None
    config = (cluster.work_dir or cluster.run_dir) / "redis.conf"
    assert cluster.redis_password in config.read_text()
    mode = config.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == redis_uid
    nginx, chat = cluster.users.nginx, cluster.users.chat
    assert not nginx.can_run(["cat", str(config)]) and not chat.can_run(["cat", str(config)])
    for pid in chat_pids:  # the chat's copy of the password, in its environment
        assert not nginx.can_run(["cat", f"/proc/{pid}/environ"])
        assert not cluster.users.redis.can_run(["cat", f"/proc/{pid}/environ"])


def test_two_services_under_one_user_are_refused(tmp_path: Path) -> None:
    cluster = Cluster(processes=1, port=free_port(), run_dir=tmp_path, user="nobody", nginx_user="nobody")
    if os.geteuid() != 0:
        cluster._drop_privileges()  # not root: nobody to drop to, nothing to refuse
        assert cluster.users is None
        return
    with pytest.raises(ClusterError, match="must be three different users"):
        cluster._drop_privileges()
    assert RunAs.lookup("nobody").uid != 0
