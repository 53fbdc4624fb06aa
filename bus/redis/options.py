"""What the Redis bus needs to know, and nothing of the application's other settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisOptions:
    url: str
    node_id: str
    cluster: bool = False  # the URL names one node of a Redis Cluster
    prefix: str = "chat"  # every key starts with "<prefix>:"
    retention: int = 1000  # messages kept per room, at least
    resend_window: float = 600.0  # seconds a client_id is remembered
    room_ttl: float = 604800.0  # seconds after a room's last message that its keys go (0: never)
    history_bytes: int = 0  # UTF-8 bytes of message text a room's stream keeps at most (0: no bound)
    timeout: float = 1.0  # seconds for one Redis command (0: no limit)
    presence_timeout: float = 30.0  # seconds of silence before a process is taken for dead (0: never)
    wait_replicas: int = 0  # replicas that must hold a message before it is accepted
    wait_timeout_ms: int = 500
    rate_limit: float = 0.0  # messages per second per user in a room, over every process (0: no shared budget)
    rate_burst: int = 0
