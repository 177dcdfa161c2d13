"""The ``redis`` backend (alias ``valkey``): a state store with native TTL, sync and natively async.

The shared pieces in :mod:`._common` (key layout, value codecs, the increment script, the operations
as command plans) also serve the ``upstash`` backend, which speaks the same commands over REST.
"""

from .state import AsyncRedisStateStore, RedisStateStore

__all__ = ["AsyncRedisStateStore", "RedisStateStore"]
