"""MongoDB backends. State: :class:`MongoDBStateStore` (pymongo) and :class:`AsyncMongoDBStateStore`
(pymongo's native async API, which replaces the deprecated Motor), sharing one document layout.

    MongoDBStateStore("mongodb://user:pw@host:27017/app?collection=state&namespace=svc")
    AsyncMongoDBStateStore("mongodb+async://host/app")      # or mongodb:// / mongodb+srv://

Unverified against a live MongoDB where it was written (no server there); see ``state``.
"""

from .state import AsyncMongoDBStateStore, MongoDBStateStore

__all__ = ["AsyncMongoDBStateStore", "MongoDBStateStore"]
