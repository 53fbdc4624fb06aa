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
# Redis scripts cannot include one another: a shared part goes in front of each script that uses it.
# trim.lua: the scripts that add to a room's stream trim it; entries.lua: the scripts that read entries' fields.
_FRONT = {"publish": ("trim",), "change": ("entries", "trim"), "older": ("entries",), "history": ("entries",)}


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
        parts = (*_FRONT.get(name, ()), name)
        return client.register_script("".join((_HERE / f"{part}.lua").read_text() for part in parts))
