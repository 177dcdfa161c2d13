"""SingleStore stores: the ``singlestore`` conversation store (official ``singlestoredb`` client).

Importing this package imports no driver (the store imports singlestoredb when it is built)."""

from .conversation import SingleStoreConversationStore

__all__ = ["SingleStoreConversationStore"]
