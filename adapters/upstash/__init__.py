"""The ``upstash`` backend: a state store on Upstash Redis over its REST API, sync and natively async.
It reuses the Redis adapter's key layout, value codec, increment script and operation plans."""

from .state import AsyncUpstashStateStore, UpstashStateStore

__all__ = ["AsyncUpstashStateStore", "UpstashStateStore"]
