"""The Redis Streams bus: one stream per room, one consumer group per process, for one Redis or a cluster."""

from bus.redis.broker import RedisBroker
from bus.redis.options import RedisOptions

__all__ = ["RedisBroker", "RedisOptions"]
