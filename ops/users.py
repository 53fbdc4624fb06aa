"""The accounts a root launcher runs its services as: one each for the chat processes, Redis and nginx's workers.

Each holds what the others must not: nginx's workers face every client, so
a flaw there must not reach the Redis password (in Redis's own config file,
mode 0600, and in the chat processes' environment, which only their own
user and root can read) nor the chat's cookie secret. Three users, so that
no uid can read another's files or ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Debian's: nobody for the chat, the redis-server package's user, nginx's www-data.
DEFAULT_CHAT_USER = "nobody"
DEFAULT_REDIS_USER = "redis"
DEFAULT_NGINX_USER = "www-data"


class UsersError(ValueError):
    """The services' users cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account for the services a root launcher starts."""

    name: str
    uid: int
    gid: int
    group: str

    @classmethod
    def lookup(cls, name: str, flag: str = "--user") -> "RunAs":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise UsersError(f"no user {name!r} to run the services as (see {flag})") from None
        return cls(name, entry.pw_uid, entry.pw_gid, grp.getgrgid(entry.pw_gid).gr_name)

    def can_run(self, argv: list[str]) -> bool:
        """Whether this user can start ``argv`` (an interpreter in a private home cannot be)."""
        try:
            done = subprocess.run(
                argv,
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0

    def give(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


@dataclass(frozen=True)
class ServiceUsers:
    """Who runs what: three different unprivileged users."""

    chat: RunAs
    redis: RunAs
    nginx: RunAs

    @classmethod
    def lookup(cls, chat: str, redis: str, nginx: str) -> "ServiceUsers":
        users = cls(
            RunAs.lookup(chat, "--user"), RunAs.lookup(redis, "--redis-user"), RunAs.lookup(nginx, "--nginx-user")
        )
        if any(user.uid == 0 for user in users.all()):
            raise UsersError("the services' users must not be root (see --user, --redis-user, --nginx-user)")
        if len({user.uid for user in users.all()}) < 3:
            raise UsersError(
                f"--user ({chat}), --redis-user ({redis}) and --nginx-user ({nginx}) must be three different "
                "users: one that shares a uid with another can read its files and its environment"
            )
        return users

    def all(self) -> tuple[RunAs, RunAs, RunAs]:
        return self.chat, self.redis, self.nginx

    def check_checkout(self, paths: dict[str, Path]) -> None:
        """Each user can read what it needs of this checkout (``paths``: role -> file); else UsersError saying how."""
        for role, user in (("the chat processes", self.chat), ("Redis", self.redis), ("nginx", self.nginx)):
            if user.can_run(["test", "-r", str(paths[role])]):
                continue
            private = next((p for p in [ROOT, *ROOT.parents] if not p.stat().st_mode & 0o001), ROOT)
            raise UsersError(
                f"user {user.name} cannot read this checkout ({private} is mode "
                f"{private.stat().st_mode & 0o777:04o}), and {role} run as {user.name}: clone it where "
                f"{user.name} can read it (e.g. under /srv or /opt), or give that directory o+x "
                f"(chmod o+x {private}), or name other users with --user, --redis-user, --nginx-user"
            )
