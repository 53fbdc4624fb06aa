"""The Lua scripts of the Redis bus (``scripts/*.lua``), registered once.

Each script touches the keys of one room (one hash tag, one cluster slot) or
the processes' bookkeeping (the ``{@nodes}`` tag), never both, so it runs on
one shard. redis-py loads a script on a shard the first time it is missing
there (``NOSCRIPT``), pipelines included.
"""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis as RedisClient
from redis.commands.core import AsyncScript

_HERE = Path(__file__).resolve().parent / "scripts"
_TRIMMING = {"publish", "change"}  # the scripts that add to a room's stream, and so trim it (trim.lua)


class Scripts:
    def __init__(self, client: RedisClient) -> None:
        self.publish = self._load(client, "publish")
        self.history = self._load(client, "history")
        self.change = self._load(client, "change")
        self.older = self._load(client, "older")
        self.ensure_group = self._load(client, "ensure_group")
        self.drop_group = self._load(client, "drop_group")
        self.beat = self._load(client, "beat")
        self.forget = self._load(client, "forget")
        self.set_connections = self._load(client, "set_connections")
        self.typing = self._load(client, "typing")
        self.lag = self._load(client, "lag")

    @staticmethod
    def _load(client: RedisClient, name: str) -> AsyncScript:
        text = (_HERE / f"{name}.lua").read_text()
        if name in _TRIMMING:  # Redis scripts cannot include one another: the shared part goes in front
            text = (_HERE / "trim.lua").read_text() + text
        return client.register_script(text)
