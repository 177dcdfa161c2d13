"""The ``couchbase`` knowledge store (Couchbase Server 7.6+ through the ``couchbase`` SDK 4.x); see :mod:`.knowledge`.

The SDK is imported when a store is opened, not by this package."""

from .knowledge import CouchbaseKnowledgeStore

__all__ = ["CouchbaseKnowledgeStore"]
