"""The ``singlestore_vector`` knowledge store (SingleStore 8.5+ through ``singlestoredb``); see :mod:`.knowledge`.

The client library is imported when a store is opened, not by this package."""

from .knowledge import SingleStoreVectorKnowledgeStore

__all__ = ["SingleStoreVectorKnowledgeStore"]
